//! The per-container shim: a small subreaper that owns one runc container.
//!
//! runc started detached loses its container's exit status, so every container
//! runs under a shim (`skiff shim …`, see [`shim_main`]). The shim
//! 1. leaves the agent's session and becomes a child subreaper,
//! 2. runs `runc create` with stdin `/dev/null` and stdout/stderr pipes,
//! 3. writes [`STATE_FILE`] (`{"status":"created","pid":N}` or
//!    `{"status":"error","message":…}`),
//! 4. copies the container's output into the CRI log file while the agent
//!    runs `runc start` (the agent records the start time in [`STARTED_FILE`]),
//! 5. reaps the container's init, reads the memory cgroup's OOM counter, writes
//!    [`EXIT_FILE`] atomically and finally runs `runc delete`.
//!
//! All files live in the container's bundle directory.

use jiff::Timestamp;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The shim's state file in the bundle.
pub const STATE_FILE: &str = "shim-state.json";
/// The exit file in the bundle, written once the container's init has been reaped.
pub const EXIT_FILE: &str = "exit.json";
/// The start time (RFC 3339), written by the agent just before `runc start`.
pub const STARTED_FILE: &str = "started";
/// The largest log record; longer lines are split into partial (`P`) records.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// What the shim reports after `runc create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ShimState {
    /// The container exists; `pid` is its init.
    Created {
        /// Host pid of the container's init.
        pid: u32,
    },
    /// `runc create` failed.
    Error {
        /// What runc printed.
        message: String,
    },
}

/// The exit file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// The signal that ended the init, if any.
    pub signal: Option<i32>,
    /// When the container was started, if it was.
    pub started_at: Option<Timestamp>,
    /// When the init was reaped.
    pub finished_at: Timestamp,
    /// Whether the OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// The shim's command line: `--runc BIN --runc-root DIR --bundle DIR --id ID --log FILE --cgroup PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShimArgs {
    /// The runc binary.
    pub runc: String,
    /// runc's `--root` state directory.
    pub runc_root: PathBuf,
    /// The bundle directory (holds config.json and the shim's files).
    pub bundle: PathBuf,
    /// The container id.
    pub id: String,
    /// The CRI log file.
    pub log: PathBuf,
    /// The container's cgroup path (relative to each hierarchy's mount point).
    pub cgroup: String,
    /// The container's stdin: "" (none, /dev/null), "open" (fed by every
    /// attach), "once" (closed when the first attach ends), from the container's
    /// `stdin` and `stdinOnce`.
    pub stdin: String,
}

/// The Unix socket in the bundle that feeds a container's stdin (when it has one).
pub const ATTACH_SOCKET: &str = "attach.sock";

impl ShimArgs {
    /// Parses the shim's arguments (without the program name or subcommand).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut out = ShimArgs::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            match flag.as_str() {
                "--runc" => out.runc = value,
                "--runc-root" => out.runc_root = value.into(),
                "--bundle" => out.bundle = value.into(),
                "--id" => out.id = value,
                "--log" => out.log = value.into(),
                "--cgroup" => out.cgroup = value,
                "--stdin" => out.stdin = value,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        for (name, missing) in [
            ("--runc", out.runc.is_empty()),
            ("--bundle", out.bundle.as_os_str().is_empty()),
            ("--id", out.id.is_empty()),
            ("--log", out.log.as_os_str().is_empty()),
        ] {
            if missing {
                return Err(format!("{name} is required"));
            }
        }
        Ok(out)
    }

    /// The arguments that [`ShimArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--runc".into(),
            self.runc.clone(),
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--log".into(),
            self.log.display().to_string(),
            "--cgroup".into(),
            self.cgroup.clone(),
            "--stdin".into(),
            self.stdin.clone(),
        ]
    }
}

/// Formats a timestamp as the CRI log format does: RFC 3339 in UTC with nine fractional digits.
pub fn log_timestamp(ts: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ts.subsec_nanosecond()
    )
}

/// Splits buffered output into CRI log records. Complete lines become `F` records (without
/// their newline); a run of [`MAX_LOG_LINE`] bytes without a newline becomes a `P` record.
/// Returns the records and leaves the unfinished rest in `buf`. At end of stream (`eof`)
/// the rest becomes a final `F` record.
pub fn split_records(buf: &mut Vec<u8>, eof: bool) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if let Some(pos) = buf.iter().take(MAX_LOG_LINE + 1).position(|b| *b == b'\n')
            && pos <= MAX_LOG_LINE
        {
            let line: Vec<u8> = buf.drain(..=pos).take(pos).collect();
            out.push((false, line));
        } else if buf.len() >= MAX_LOG_LINE {
            let chunk: Vec<u8> = buf.drain(..MAX_LOG_LINE).collect();
            out.push((true, chunk));
        } else {
            break;
        }
    }
    if eof && !buf.is_empty() {
        out.push((false, std::mem::take(buf)));
    }
    out
}

/// One CRI log record.
pub fn format_record(ts: Timestamp, stream: &str, partial: bool, line: &[u8]) -> Vec<u8> {
    let mut rec = format!(
        "{} {stream} {} ",
        log_timestamp(ts),
        if partial { "P" } else { "F" }
    )
    .into_bytes();
    rec.extend_from_slice(line);
    rec.push(b'\n');
    rec
}

/// Writes `data` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The shim's entry point (`skiff shim …`); returns the process exit code.
pub fn shim_main(args: &[String]) -> i32 {
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff shim: {e}");
            return 2;
        }
    };
    // A new session: the shim outlives the agent and ignores its terminal's signals.
    let _ = nix::unistd::setsid();
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("skiff shim: PR_SET_CHILD_SUBREAPER: {e}");
        return 1;
    }
    match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skiff shim {}: {e}", args.id);
            1
        }
    }
}

fn report(bundle: &Path, state: &ShimState) -> std::io::Result<()> {
    let data = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    write_atomic(&bundle.join(STATE_FILE), &data)
}

fn runc(args: &ShimArgs) -> Command {
    let mut cmd = Command::new(&args.runc);
    cmd.arg("--root").arg(&args.runc_root);
    cmd
}

fn run(args: &ShimArgs) -> std::io::Result<()> {
    if let Some(dir) = args.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = Arc::new(Mutex::new(RotatingLog::open(
        &args.log,
        MAX_LOG_SIZE,
        MAX_LOG_FILES,
    )?));
    let pid_file = args.bundle.join("init.pid");
    // A container with stdin reads a pipe the shim feeds from attach connections.
    let (stdin, feed) = if args.stdin.is_empty() {
        (Stdio::null(), None)
    } else {
        let (r, w) = std::io::pipe()?;
        (Stdio::from(r), Some(w))
    };
    let mut child = runc(args)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let status = child.wait()?;
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let pid = match (status.success(), pid) {
        (true, Some(pid)) => pid,
        _ => {
            // runc has exited and no container holds the pipes: read what it printed.
            let mut message = Vec::new();
            let _ = stderr.read_to_end(&mut message);
            let mut rest = Vec::new();
            let mut stdout = stdout;
            let _ = stdout.read_to_end(&mut rest);
            message.extend(rest);
            let message = String::from_utf8_lossy(&message).trim().to_string();
            let message = if message.is_empty() {
                format!("runc create: {status}")
            } else {
                message
            };
            report(&args.bundle, &ShimState::Error { message })?;
            return Ok(());
        }
    };
    let copiers = [
        spawn_copier(stdout, "stdout", log.clone()),
        spawn_copier(stderr, "stderr", log.clone()),
    ];
    if let Some(feed) = feed {
        serve_stdin(&args.bundle.join(ATTACH_SOCKET), feed, args.stdin == "once")?;
    }
    report(&args.bundle, &ShimState::Created { pid })?;

    let (exit_code, signal) = reap(pid);
    for c in copiers {
        let _ = c.join();
    }
    let finished_at = Timestamp::now();
    let started_at = std::fs::read_to_string(args.bundle.join(STARTED_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<Timestamp>().ok());
    let oom_killed = oom_killed(&args.cgroup, signal);
    let record = ExitRecord {
        exit_code,
        signal,
        started_at,
        finished_at,
        oom_killed,
    };
    let data = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    write_atomic(&args.bundle.join(EXIT_FILE), &data)?;
    let _ = runc(args)
        .arg("delete")
        .arg("--force")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

/// Feeds the container's stdin from connections to `socket`, one at a time;
/// with `once`, the end of the first connection closes stdin (the container
/// reads EOF), as Kubernetes' stdinOnce does.
fn serve_stdin(socket: &Path, feed: std::io::PipeWriter, once: bool) -> std::io::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)?;
    std::thread::spawn(move || {
        let mut feed = feed;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = std::io::copy(&mut conn, &mut feed);
            if once {
                // Dropping the writer closes the container's stdin.
                return;
            }
        }
    });
    Ok(())
}

/// Reaps children (the init is re-parented to this subreaper) until `pid` is gone.
fn reap(pid: u32) -> (i32, Option<i32>) {
    let target = Pid::from_raw(pid as i32);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p == target => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == target => {
                let n = sig as i32;
                return (128 + n, Some(n));
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No children: the init was never ours (or already gone).
            Err(_) => return (255, None),
        }
    }
}

/// Whether the kernel OOM killer ended a process of the container's memory cgroup.
fn oom_killed(cgroup: &str, signal: Option<i32>) -> bool {
    if cgroup.is_empty() {
        return false;
    }
    let rel = cgroup.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory").join(rel);
    let (control, key) = if v1.is_dir() {
        (v1.join("memory.oom_control"), "oom_kill")
    } else {
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill",
        )
    };
    if let Ok(text) = std::fs::read_to_string(&control)
        && let Some(n) = counter(&text, key)
    {
        return n > 0;
    }
    // Old kernels have no oom_kill counter: a SIGKILL after hitting the limit.
    let failcnt = std::fs::read_to_string(v1.join("memory.failcnt"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    failcnt > 0 && signal == Some(9)
}

/// Reads `key N` from a cgroup flat-keyed file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The kubelet's defaults: rotate a container's log at 10 MiB, keep 5 files.
pub const MAX_LOG_SIZE: u64 = 10 * 1024 * 1024;
/// How many files of one container's log exist at most (the live one included).
pub const MAX_LOG_FILES: usize = 5;

/// A CRI log file that rotates as the kubelet rotates container logs: when
/// a write would pass `max_size`, the file is renamed to
/// `<name>.<YYYYMMDD-HHMMSS>` and a new one started; only the newest
/// `max_files - 1` rotated files are kept. Records are never split.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl RotatingLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Appends whole records, rotating first if they would not fit.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S%.f").to_string();
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        // Keep the newest max_files - 1 rotated files.
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut old: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{name}.")))
            })
            .collect();
        old.sort();
        while old.len() > self.max_files - 1 {
            let _ = std::fs::remove_file(old.remove(0));
        }
        Ok(())
    }
}

fn spawn_copier(
    mut from: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<RotatingLog>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            let (n, eof) = match from.read(&mut chunk) {
                Ok(0) | Err(_) => (0, true),
                Ok(n) => (n, false),
            };
            buf.extend_from_slice(&chunk[..n]);
            let records = split_records(&mut buf, eof);
            if !records.is_empty() {
                let now = Timestamp::now();
                let mut out = Vec::new();
                for (partial, line) in records {
                    out.extend(format_record(now, stream, partial, &line));
                }
                if let Ok(mut f) = log.lock() {
                    let _ = f.write(&out);
                }
            }
            if eof {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_at_the_size_limit_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            log.write(format!("2026-11-28T05:00:00Z stdout F line {i:02} ........\n").as_bytes())
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "0.log");
        assert!(names[1].starts_with("0.log.2"));
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("line 19 ........\n"), "{live}");
        assert!(live.len() <= 100);
        assert!(
            live.lines().all(|l| l.starts_with("2026-")),
            "records are never split"
        );
    }

    #[test]
    fn splits_records() {
        let big = vec![b'x'; MAX_LOG_LINE + 10];
        // (input, eof, records, rest left in the buffer)
        type Case = (Vec<u8>, bool, Vec<(bool, Vec<u8>)>, Vec<u8>);
        let cases: Vec<Case> = vec![
            (
                b"a\nb".to_vec(),
                false,
                vec![(false, b"a".to_vec())],
                b"b".to_vec(),
            ),
            (
                b"a\nb".to_vec(),
                true,
                vec![(false, b"a".to_vec()), (false, b"b".to_vec())],
                vec![],
            ),
            (b"\n".to_vec(), false, vec![(false, vec![])], vec![]),
            (
                big.clone(),
                false,
                vec![(true, vec![b'x'; MAX_LOG_LINE])],
                vec![b'x'; 10],
            ),
            (
                [vec![b'y'; MAX_LOG_LINE], b"\n".to_vec()].concat(),
                false,
                vec![(false, vec![b'y'; MAX_LOG_LINE])],
                vec![],
            ),
        ];
        for (input, eof, want, rest) in cases {
            let mut buf = input.clone();
            assert_eq!(
                split_records(&mut buf, eof),
                want,
                "input len {}",
                input.len()
            );
            assert_eq!(buf, rest);
        }
    }

    #[test]
    fn formats_records() {
        let ts: Timestamp = "2026-11-28T05:00:00.1234Z".parse().unwrap();
        assert_eq!(
            format_record(ts, "stdout", false, b"hello"),
            b"2026-11-28T05:00:00.123400000Z stdout F hello\n"
        );
        assert_eq!(
            format_record(ts, "stderr", true, b"x"),
            b"2026-11-28T05:00:00.123400000Z stderr P x\n"
        );
    }

    #[test]
    fn parses_args_round_trip() {
        let a = ShimArgs {
            runc: "/usr/bin/runc".into(),
            runc_root: "/r".into(),
            bundle: "/b".into(),
            id: "c1".into(),
            log: "/l/0.log".into(),
            cgroup: "/skiff/pod1/c1".into(),
            stdin: "once".into(),
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        assert!(ShimArgs::parse(&["--id".into()]).is_err());
        assert!(ShimArgs::parse(&["--bogus".into(), "x".into()]).is_err());
        assert_eq!(
            ShimArgs::parse(&["--id".into(), "x".into()]).unwrap_err(),
            "--runc is required"
        );
    }

    #[test]
    fn reads_cgroup_counters() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(counter(text, "oom_kill"), Some(2));
        assert_eq!(counter(text, "under_oom"), Some(0));
        assert_eq!(counter(text, "missing"), None);
    }
}
