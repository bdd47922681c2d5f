"""The original cache_tool (seed 000), vendored verbatim as a test fixture under the name orig_cache_tool."""
