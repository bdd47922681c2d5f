//! Tables (polars, pandas, pyarrow) stored as Arrow IPC files beside the other value files.
//!
//! A frame file is written under a temp name and renamed to `{stem}.{crc32:08x}.arrow`, the
//! CRC-32 of its bytes in its name as the `.val` files carry theirs, so a reader needs no
//! other metadata to tell a damaged file from a good one. A read takes the file into one
//! buffer, verifies that checksum before decoding anything, and decodes arrays that point
//! into the buffer: uncompressed buffers are not copied again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::{CompressionType, root_as_footer};
use arrow_schema::{ArrowError, SchemaRef};

use crate::fsio::{self, FsError};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("frame file {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The table handed in cannot be written as Arrow IPC.
    #[error("cannot store this table as an Arrow file: {0}")]
    Unsupported(String),
    #[error("unknown frame compression {0:?}: use 'lz4', 'zstd' or 'none'")]
    UnknownCodec(String),
}

pub type Result<T, E = FrameError> = std::result::Result<T, E>;

/// How the buffers of a frame file are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn parse(name: &str) -> Result<Codec> {
        match name {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            other => Err(FrameError::UnknownCodec(other.to_owned())),
        }
    }

    fn ipc(self) -> Option<CompressionType> {
        match self {
            Codec::None => None,
            Codec::Lz4 => Some(CompressionType::LZ4_FRAME),
            Codec::Zstd => Some(CompressionType::ZSTD),
        }
    }
}

/// A writer that keeps the CRC-32 and length of what went through it.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What [`write`] left on disk.
#[derive(Debug)]
pub struct Written {
    /// The file's name in its directory: `{stem}.{crc32:08x}.arrow`.
    pub name: String,
    pub size: u64,
}

fn io_err(path: &Path, e: io::Error) -> FrameError {
    FsError::io(path, e).into()
}

fn arrow_to_write_error(path: &Path, e: ArrowError) -> FrameError {
    match e {
        ArrowError::IoError(_, source) => io_err(path, source),
        other => FrameError::Unsupported(other.to_string()),
    }
}

/// Write `batches` as the Arrow IPC file `dir/{stem}.{crc32}.arrow`, with `meta` in its
/// footer, through a temp name so that nothing but a complete file ever has the final name.
pub fn write(
    dir: &Path,
    stem: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    codec: Codec,
    meta: &[(String, String)],
    durable: bool,
) -> Result<Written> {
    let tmp = dir.join(format!(".{stem}.arrow.tmp"));
    let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    let written = fill(&tmp, file, schema, batches, codec, meta, durable);
    let (crc, size) = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let name = format!("{stem}.{crc:08x}.arrow");
    let path = dir.join(&name);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&path, e));
    }
    if durable {
        fsio::fsync_dir(dir)?;
    }
    Ok(Written { name, size })
}

fn fill(
    tmp: &Path,
    file: File,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    codec: Codec,
    meta: &[(String, String)],
    durable: bool,
) -> Result<(u32, u64)> {
    let sink = BufWriter::with_capacity(
        1 << 20,
        Summed {
            inner: file,
            crc: crc32fast::Hasher::new(),
            len: 0,
        },
    );
    let options = IpcWriteOptions::default()
        .try_with_compression(codec.ipc())
        .map_err(|e| FrameError::Unsupported(e.to_string()))?;
    let mut writer = FileWriter::try_new_with_options(sink, schema, options)
        .map_err(|e| arrow_to_write_error(tmp, e))?;
    for (k, v) in meta {
        writer.write_metadata(k, v);
    }
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| arrow_to_write_error(tmp, e))?;
    }
    writer.finish().map_err(|e| arrow_to_write_error(tmp, e))?;
    let summed = writer
        .into_inner()
        .map_err(|e| arrow_to_write_error(tmp, e))?
        .into_inner()
        .map_err(|e| io_err(tmp, e.into_error()))?;
    if durable {
        summed.inner.sync_all().map_err(|e| io_err(tmp, e))?;
    }
    Ok((summed.crc.finalize(), summed.len))
}

/// A frame read back.
#[derive(Debug)]
pub struct Frame {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The footer's metadata (what the writer put there: the Python layer names the frame's
    /// type in it).
    pub meta: HashMap<String, String>,
    /// Bytes the decoded arrays use (what a hot tier holding the frame costs).
    pub nbytes: usize,
}

/// The CRC-32 a frame file's name carries, if it is one of ours.
pub fn crc_of_name(name: &str) -> Option<u32> {
    let rest = name.strip_suffix(".arrow")?;
    let (_, crc) = rest.rsplit_once('.')?;
    if crc.len() != 8 {
        return None;
    }
    u32::from_str_radix(crc, 16).ok()
}

/// Read the frame file at `path`, verified against the CRC-32 its name carries.
pub fn read(path: &Path) -> Result<Frame> {
    let corrupt = |reason: String| FrameError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let expected = crc_of_name(name).ok_or_else(|| {
        corrupt("its name carries no checksum (not a candlecache frame file)".into())
    })?;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len() as usize;
    let (bytes, crc) = read_summed(&file, len).map_err(|e| io_err(path, e))?;
    if crc != expected {
        return Err(corrupt(format!(
            "checksum mismatch ({} bytes with CRC-32 {crc:08x}, its name says {expected:08x}): truncated or overwritten",
            bytes.len()
        )));
    }
    decode(Buffer::from_vec(bytes)).map_err(|e| corrupt(e.to_string()))
}

/// Files up to this size are read and summed on one thread.
const SPLIT_FROM: usize = 4 << 20;

/// The file's `len` bytes and their CRC-32: two halves read and summed at once on two threads
/// for a large file (a frame's read is this copy and this sum, nothing else of its size).
fn read_summed(file: &File, len: usize) -> io::Result<(Vec<u8>, u32)> {
    // Zeroed by the allocator from fresh pages (no memset for a large buffer).
    let mut bytes = vec![0u8; len];
    if len < SPLIT_FROM {
        read_exact_at(file, &mut bytes, 0)?;
        let crc = crc32fast::hash(&bytes);
        return Ok((bytes, crc));
    }
    let (head, tail) = bytes.split_at_mut(len / 2);
    let offset = head.len() as u64;
    let (first, second) = std::thread::scope(|s| {
        let other = s.spawn(|| -> io::Result<crc32fast::Hasher> {
            read_exact_at(file, tail, offset)?;
            let mut h = crc32fast::Hasher::new();
            h.update(tail);
            Ok(h)
        });
        let mine = read_exact_at(file, head, 0).map(|()| {
            let mut h = crc32fast::Hasher::new();
            h.update(head);
            h
        });
        let theirs = other
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        (mine, theirs)
    });
    let mut crc = first?;
    crc.combine(&second?);
    // The file may have grown since its size was read: that is damage the checksum reports.
    Ok((bytes, crc.finalize()))
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

fn decode(buffer: Buffer) -> Result<Frame, ArrowError> {
    let invalid = |what: &str| ArrowError::ParseError(what.to_owned());
    if buffer.len() < 10 {
        return Err(invalid("too short for an Arrow IPC file"));
    }
    let trailer = buffer.len() - 10;
    let tail: [u8; 10] = buffer[trailer..]
        .try_into()
        .map_err(|_| invalid("no trailer"))?;
    let footer_len = read_footer_length(tail)?;
    let footer_start = trailer
        .checked_sub(footer_len)
        .ok_or_else(|| invalid("footer length past the start of the file"))?;
    let footer = root_as_footer(&buffer[footer_start..trailer])
        .map_err(|e| ArrowError::ParseError(format!("unreadable footer: {e}")))?;
    let schema = Arc::new(try_fb_to_schema(
        footer.schema().ok_or_else(|| invalid("no schema"))?,
    )?);
    let mut meta = HashMap::new();
    for kv in footer.custom_metadata().iter().flatten() {
        if let (Some(k), Some(v)) = (kv.key(), kv.value()) {
            meta.insert(k.to_owned(), v.to_owned());
        }
    }
    let block_data = |offset: i64, len: usize| -> Result<Buffer, ArrowError> {
        let start = usize::try_from(offset).map_err(|_| invalid("negative block offset"))?;
        if start.checked_add(len).is_none_or(|end| end > footer_start) {
            return Err(invalid("block past the end of the data"));
        }
        Ok(buffer.slice_with_length(start, len))
    };
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    for block in footer.dictionaries().iter().flatten() {
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        decoder.read_dictionary(block, &block_data(block.offset(), len)?)?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        if let Some(batch) = decoder.read_record_batch(block, &block_data(block.offset(), len)?)? {
            batches.push(batch);
        }
    }
    let nbytes = batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum();
    Ok(Frame {
        schema,
        batches,
        meta,
        nbytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};

    fn kind(k: &str) -> Vec<(String, String)> {
        vec![("kind".to_owned(), k.to_owned())]
    }

    fn batch(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "time",
                Arc::new(Int64Array::from_iter_values(0..n)) as Arc<dyn Array>,
            ),
            (
                "close",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 3.0),
                )) as _,
            ),
            (
                "note",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 3 == 0).then(|| format!("n{i}"))),
                )) as _,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn round_trip_every_codec() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(10_000);
        for (i, codec) in [Codec::None, Codec::Lz4, Codec::Zstd]
            .into_iter()
            .enumerate()
        {
            let w = write(
                dir.path(),
                &format!("f{i}"),
                &b.schema(),
                &[b.clone(), b.slice(5, 10)],
                codec,
                &kind("polars"),
                false,
            )
            .unwrap();
            assert_eq!(
                fs::metadata(dir.path().join(&w.name)).unwrap().len(),
                w.size
            );
            let f = read(&dir.path().join(&w.name)).unwrap();
            assert_eq!(f.batches, vec![b.clone(), b.slice(5, 10)]);
            assert_eq!(f.meta.get("kind").map(String::as_str), Some("polars"));
            assert!(f.nbytes > 0);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn an_empty_table_keeps_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(3);
        let w = write(
            dir.path(),
            "e",
            &b.schema(),
            &[],
            Codec::Lz4,
            &kind("pyarrow"),
            false,
        )
        .unwrap();
        let f = read(&dir.path().join(&w.name)).unwrap();
        assert!(f.batches.is_empty());
        assert_eq!(f.schema, b.schema());
    }

    #[test]
    fn damage_of_any_kind_is_reported_never_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(1000);
        let w = write(
            dir.path(),
            "d",
            &b.schema(),
            &[b],
            Codec::None,
            &kind("polars"),
            false,
        )
        .unwrap();
        let path = dir.path().join(&w.name);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        for bad in [
            flipped,
            good[..good.len() - 7].to_vec(),
            Vec::new(),
            b"ARROW1junk".to_vec(),
        ] {
            fs::write(&path, &bad).unwrap();
            let err = read(&path).unwrap_err();
            assert!(matches!(err, FrameError::Corrupt { .. }), "{err}");
        }
        fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path).unwrap_err(), FrameError::Fs(_)));
    }

    #[test]
    fn names() {
        assert_eq!(crc_of_name("abc.0badf00d.arrow"), Some(0x0bad_f00d));
        assert_eq!(crc_of_name("abc.arrow"), None);
        assert_eq!(crc_of_name("abc.0badf00d.val"), None);
    }
}
