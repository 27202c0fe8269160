//! Container logs as `kubectl logs` reads them: CRI-format files
//! (`<RFC3339Nano> <stream> <P|F> <text>`) turned back into the container's
//! output, with tail, since, timestamps, limitBytes and follow.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `kubectl logs` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming as the container writes.
    pub follow: bool,
    /// The previous attempt's log.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this.
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC3339Nano timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
}

/// One parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its timestamp as written.
    pub time: String,
    /// stdout or stderr.
    pub stream: String,
    /// Whether more of the line follows in the next record.
    pub partial: bool,
    /// The text, without the newline.
    pub text: Vec<u8>,
}

/// Parses one CRI log line (without its trailing newline).
pub fn parse_line(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time,
        stream,
        partial: tag == b"P",
        text,
    })
}

/// Renders complete lines from records, applying since and timestamps, then tail and limit.
pub fn render(content: &[u8], opts: &LogOptions) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    for raw in content.split(|b| *b == b'\n') {
        let Some(rec) = parse_line(raw) else { continue };
        if let Some(since) = opts.since
            && rec
                .time
                .parse::<Timestamp>()
                .map(|t| t < since)
                .unwrap_or(false)
        {
            continue;
        }
        let (time, mut text) = pending.take().unwrap_or((rec.time.clone(), Vec::new()));
        text.extend_from_slice(&rec.text);
        if rec.partial {
            pending = Some((time, text));
            continue;
        }
        let mut line = Vec::new();
        if opts.timestamps {
            line.extend_from_slice(time.as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&text);
        line.push(b'\n');
        lines.push(line);
    }
    if let Some(n) = opts.tail_lines
        && n >= 0
        && (n as usize) < lines.len()
    {
        lines.drain(..lines.len() - n as usize);
    }
    let mut out: Vec<u8> = lines.concat();
    if let Some(limit) = opts.limit_bytes
        && limit >= 0
        && (limit as usize) < out.len()
    {
        out.truncate(limit as usize);
    }
    out
}

/// The attempts of a container that have log files, oldest first.
pub fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n: u32 = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Streams a log file: what is there now (per `opts`), then, when
/// following, new complete lines until `done()` says the writer has exited
/// and the file has no more.
pub fn stream(
    path: PathBuf,
    opts: LogOptions,
    done: impl Fn() -> bool + Send + Sync + 'static,
) -> BoxStream<'static, Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let content = tokio::fs::read(&path).await.unwrap_or_default();
        // Only whole lines are rendered now; a trailing fragment waits for its newline.
        let cut = content
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let first = render(&content[..cut], &opts);
        let mut sent = first.len() as i64;
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        if !opts.follow {
            return;
        }
        let mut offset = cut;
        let follow_opts = LogOptions {
            tail_lines: None,
            since: None,
            limit_bytes: None,
            ..opts.clone()
        };
        loop {
            let finished = done();
            let content = tokio::fs::read(&path).await.unwrap_or_default();
            if content.len() > offset {
                let cut = content[offset..]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map(|i| offset + i + 1)
                    .unwrap_or(offset);
                if cut > offset {
                    let mut chunk = render(&content[offset..cut], &follow_opts);
                    offset = cut;
                    if let Some(limit) = opts.limit_bytes {
                        let room = (limit - sent).max(0) as usize;
                        chunk.truncate(room);
                    }
                    sent += chunk.len() as i64;
                    if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                    if opts.limit_bytes.is_some_and(|l| sent >= l) {
                        return;
                    }
                    continue;
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    ReceiverStream(rx).boxed()
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Bytes>);

impl futures::Stream for ReceiverStream {
    type Item = Bytes;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-28T05:00:00.000000001Z stdout F one\n\
2026-11-28T05:00:01.000000000Z stderr F two\n\
2026-11-28T05:00:02.000000000Z stdout P thr\n\
2026-11-28T05:00:02.100000000Z stdout F ee\n\
2026-11-28T05:00:03.000000000Z stdout F four\n";

    #[test]
    fn partial_records_join_and_options_apply() {
        assert_eq!(
            render(LOG.as_bytes(), &LogOptions::default()),
            b"one\ntwo\nthree\nfour\n"
        );
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), &tail), b"three\nfour\n");
        let ts = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(
            render(LOG.as_bytes(), &ts),
            b"2026-11-28T05:00:03.000000000Z four\n"
        );
        let since = LogOptions {
            since: Some("2026-11-28T05:00:01.5Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), &since), b"three\nfour\n");
        let limit = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), &limit), b"one\ntw");
        let zero = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), &zero), b"");
    }

    #[tokio::test]
    async fn follow_streams_new_lines_until_the_writer_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "2026-11-28T05:00:00Z stdout F a\n").unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let mut s = stream(
            p.clone(),
            LogOptions {
                follow: true,
                ..Default::default()
            },
            move || d2.load(std::sync::atomic::Ordering::SeqCst),
        );
        assert_eq!(s.next().await.unwrap(), Bytes::from_static(b"a\n"));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"2026-11-28T05:00:01Z stdout F b\n").unwrap();
        assert_eq!(s.next().await.unwrap(), Bytes::from_static(b"b\n"));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(s.next().await, None);
    }

    #[test]
    fn attempts_are_sorted_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for n in [10, 2, 0] {
            std::fs::write(dir.path().join(format!("{n}.log")), "").unwrap();
        }
        let a: Vec<u32> = attempts(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(a, vec![0, 2, 10]);
    }
}
