//! The command lines of the benchmarks: `--flag VALUE` pairs, switches
//! without a value, `-h`/`--help`, and counts that must be at least 1.

use anyhow::{Context, Result, anyhow, bail};
use std::path::PathBuf;

/// One flag of a command line: its name and its value (empty for a switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag<'a> {
    /// The flag as written, e.g. `--runs`.
    pub name: &'a str,
    /// The argument after it; `""` for the names in `switches`.
    pub value: &'a str,
}

/// Splits `args` into flags: every name in `switches` stands alone, every
/// other flag takes the next argument as its value (an error when there is
/// none). `-h` or `--help` prints `usage` and exits with status 0.
pub fn flags<'a>(args: &'a [String], usage: &str, switches: &[&str]) -> Result<Vec<Flag<'a>>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        if name == "-h" || name == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value = if switches.contains(&name.as_str()) {
            ""
        } else {
            it.next().with_context(|| format!("{name} needs a value"))?
        };
        out.push(Flag { name, value });
    }
    Ok(out)
}

/// The value of a count flag: a number, at least 1.
pub fn positive(f: Flag) -> Result<usize> {
    let n: usize = f
        .value
        .parse()
        .with_context(|| format!("{} {:?}: not a number", f.name, f.value))?;
    if n == 0 {
        bail!("{} must be at least 1", f.name);
    }
    Ok(n)
}

/// The error for a flag the benchmark does not know, with the usage.
pub fn unknown(f: Flag, usage: &str) -> anyhow::Error {
    anyhow!("unknown flag {:?}\n{usage}", f.name)
}

/// The directory of the running executable (where `cargo build` put the
/// other binaries the benchmarks default to); empty when unknown.
pub fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn pairs_and_switches() {
        let a = args("--runs 5 --fast --skiff /x/skiff");
        let got = flags(&a, "usage", &["--fast"]).unwrap();
        let want = [("--runs", "5"), ("--fast", ""), ("--skiff", "/x/skiff")];
        assert_eq!(
            got.iter().map(|f| (f.name, f.value)).collect::<Vec<_>>(),
            want
        );
        // A flag that is not a switch takes the next argument, whatever it is.
        let a = args("--bogus --runs");
        let got = flags(&a, "usage", &[]).unwrap();
        assert_eq!((got[0].name, got[0].value), ("--bogus", "--runs"));
        let err = flags(&args("--runs 3 --pods"), "usage", &[]).unwrap_err();
        assert_eq!(err.to_string(), "--pods needs a value");
        assert!(flags(&[], "usage", &[]).unwrap().is_empty());
    }

    #[test]
    fn counts() {
        let f = |value| Flag {
            name: "--runs",
            value,
        };
        let cases = [
            ("7", Ok(7)),
            ("0", Err("--runs must be at least 1")),
            ("x", Err("--runs \"x\": not a number")),
            ("-1", Err("--runs \"-1\": not a number")),
        ];
        for (value, want) in cases {
            let got = positive(f(value)).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{value}");
        }
        assert_eq!(
            unknown(f("1"), "usage: x").to_string(),
            "unknown flag \"--runs\"\nusage: x"
        );
    }
}
