//! Downloads: one HTTP client (rustls with the platform's certificates, proxies from
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`), timeouts, and retries with backoff on 429, 5xx and
//! connection errors.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;

use super::error::{Problem, Result, VisionError};

/// Tries per URL for answers worth retrying (429, 5xx, connection errors, short bodies).
const ATTEMPTS: u32 = 5;
/// The first backoff; it doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A `Retry-After` longer than this is not waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A whole request, body included: a monthly 1m file is a few MB, the largest daily 1s file
/// tens of MB.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub enum Got {
    Body(Vec<u8>),
    NotFound,
}

pub struct Http {
    client: Client,
    base: String,
}

impl Http {
    pub fn new(base_url: &str) -> Result<Http> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(VisionError::InvalidArgument(format!(
                "base_url must be an http:// or https:// URL, got {base_url:?}"
            )));
        }
        let client = Client::builder()
            .user_agent(concat!("candlecache/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| VisionError::Client(e.to_string()))?;
        Ok(Http { client, base })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    /// GET `path` under the base URL. Returns the body, `NotFound` on 404, or the last
    pub fn get(&self, path: &str) -> Result<Got, Problem> {
        let url = self.url(path);
        let mut wait = BACKOFF;
        let mut last = Problem::Network("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_BACKOFF);
            }
            match self.once(&url) {
                Ok(got) => return Ok(got),
                Err((problem, retry_after)) => {
                    let again = match &problem {
                        Problem::Status(s) => *s == 429 || *s == 408 || *s >= 500,
                        Problem::Network(_) => true,
                        _ => false,
                    };
                    if !again {
                        return Err(problem);
                    }
                    if let Some(after) = retry_after {
                        wait = wait.max(after.min(MAX_RETRY_AFTER));
                    }
                    last = problem;
                }
            }
        }
        Err(last)
    }

    fn once(&self, url: &str) -> Result<Got, (Problem, Option<Duration>)> {
        let net = |e: reqwest::Error| (Problem::Network(describe(&e)), None);
        let resp = self.client.get(url).send().map_err(net)?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Got::NotFound);
        }
        if !status.is_success() {
            let after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err((Problem::Status(status.as_u16()), after));
        }
        let expected = resp.content_length();
        let body = resp.bytes().map_err(net)?;
        if let Some(n) = expected
            && n != body.len() as u64
        {
            return Err((
                Problem::Network(format!("truncated body: {} of {n} bytes", body.len())),
                None,
            ));
        }
        Ok(Got::Body(body.to_vec()))
    }
}

/// reqwest's error with its causes (the top level alone says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
