//! `skiff migrate`: copies a cluster kept in SQLite into etcd, with the
//! server stopped; and k3s' `--datastore-cafile/certfile/keyfile` flags,
//! which `skiff server` shares.
//!
//! The copy itself is [`skiff_store::copy`]: every key under `/` (objects
//! under `/registry/`, the bootstrap data under `/bootstrap/`) from one
//! consistent read of the SQLite file, values verbatim, refused when the
//! etcd already holds a cluster. The SQLite file is left as it was.
//!
//! The server must be stopped: a server that kept writing would lose those
//! writes. `skiff migrate` refuses while any process has the database open
//! ([`skiff_store::SqliteStore::in_use`]); a server started during the
//! copy itself is not noticed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use skiff_store::sqlite::SqliteOptions;
use skiff_store::{CopyReport, EtcdStore, EtcdTls, SqliteStore};

/// TLS to an etcd datastore, with k3s' flag names.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DatastoreTlsArgs {
    /// CA certificate (PEM) that signed etcd's serving certificate, for an https:// etcd
    /// (default: the system's CA bundle).
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for an etcd with client-certificate auth; needs --datastore-keyfile.
    #[arg(long, requires = "datastore_keyfile")]
    pub datastore_certfile: Option<PathBuf>,
    /// Client private key (PEM) for --datastore-certfile.
    #[arg(long, requires = "datastore_certfile")]
    pub datastore_keyfile: Option<PathBuf>,
}

impl DatastoreTlsArgs {
    /// The TLS settings, if any flag is given.
    pub fn tls(&self) -> Option<EtcdTls> {
        EtcdTls::from_files(
            self.datastore_cafile.clone(),
            self.datastore_certfile.clone(),
            self.datastore_keyfile.clone(),
        )
    }
}

/// `skiff migrate`'s flags.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The server's data dir: the source is DATA_DIR/server/db/state.db unless --from names another.
    #[arg(long, short = 'd', default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// The etcd to copy into, http(s)://HOST:PORT[,…]; it must not hold a cluster yet.
    #[arg(long)]
    pub datastore_endpoint: String,
    /// TLS to etcd.
    #[command(flatten)]
    pub tls: DatastoreTlsArgs,
    /// The SQLite database to copy, sqlite://PATH (default DATA_DIR/server/db/state.db).
    #[arg(long)]
    pub from: Option<String>,
}

/// The SQLite file to copy: `--from sqlite://PATH`, else the data dir's.
fn source_path(data_dir: &Path, from: Option<&str>) -> Result<PathBuf> {
    match from {
        None => Ok(skiff_apiserver::default_sqlite_path(data_dir)),
        Some(from) => match from.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => bail!("--from takes sqlite://PATH (a skiff SQLite database), not {from:?}"),
        },
    }
}

/// The line `skiff migrate` prints when done.
fn summary(report: &CopyReport, source: &Path, endpoint: &str) -> String {
    format!(
        "migrated {} keys ({}) from {} (revision {}) to etcd at {endpoint} (now at revision {}) \
         in {:.2}s; start the server with --datastore-endpoint {endpoint} (the SQLite file is \
         left as it was)",
        report.keys,
        crate::human_size(report.bytes),
        source.display(),
        report.source_revision,
        report.target_revision,
        report.elapsed.as_secs_f64(),
    )
}

/// Copies the SQLite cluster into etcd; see the module notes.
pub async fn migrate(args: MigrateArgs) -> Result<()> {
    let source = source_path(&args.data_dir, args.from.as_deref())?;
    let endpoint = &args.datastore_endpoint;
    let endpoints = skiff_store::etcd::parse_endpoints(endpoint).ok_or_else(|| {
        anyhow!(
            "skiff migrate copies into etcd: --datastore-endpoint must be \
             http(s)://HOST:PORT[,…], not {endpoint:?}"
        )
    })?;
    if !source.is_file() {
        bail!(
            "no SQLite database at {} (give the server's --data-dir, or --from sqlite://PATH)",
            source.display()
        );
    }
    if SqliteStore::in_use(&source)? {
        bail!(
            "{} is in use, by a running skiff server: stop the server before migrating",
            source.display()
        );
    }
    let target = EtcdStore::connect(&endpoints, args.tls.tls().as_ref()).await?;
    let options = SqliteOptions {
        compact_interval: None,
        ..SqliteOptions::default()
    };
    let from = SqliteStore::open(&source, options)?;
    let copied = skiff_store::copy(&from, &target, "/").await;
    from.close()?;
    let report = copied
        .with_context(|| format!("migrating {} into etcd at {endpoint}", source.display()))?;
    println!("{}", summary(&report, &source, endpoint));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_data_dirs_database_unless_from_names_one() {
        let dir = Path::new("/var/lib/skiff");
        let cases: &[(Option<&str>, Result<&str, &str>)] = &[
            (None, Ok("/var/lib/skiff/server/db/state.db")),
            (Some("sqlite:///backup/state.db"), Ok("/backup/state.db")),
            (Some("sqlite://"), Err("--from takes sqlite://PATH")),
            (Some("/backup/state.db"), Err("--from takes sqlite://PATH")),
            (
                Some("http://127.0.0.1:2379"),
                Err("not \"http://127.0.0.1:2379\""),
            ),
        ];
        for (from, want) in cases {
            let got = source_path(dir, *from).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, Path::new(want), "{from:?}"),
                (Err(want), Err(got)) => assert!(got.contains(want), "{from:?}: {got}"),
                _ => panic!("{from:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_summary_names_counts_sizes_revisions_and_time() {
        let report = CopyReport {
            keys: 412,
            bytes: 1_234_567,
            source_revision: 3_001,
            target_revision: 413,
            elapsed: std::time::Duration::from_millis(1_250),
        };
        assert_eq!(
            summary(&report, Path::new("/d/server/db/state.db"), "http://e:2379"),
            "migrated 412 keys (1.2MB) from /d/server/db/state.db (revision 3001) to etcd at \
             http://e:2379 (now at revision 413) in 1.25s; start the server with \
             --datastore-endpoint http://e:2379 (the SQLite file is left as it was)"
        );
    }

    #[test]
    fn tls_flags_become_etcd_tls_only_when_given() {
        assert_eq!(DatastoreTlsArgs::default().tls(), None);
        let args = DatastoreTlsArgs {
            datastore_cafile: Some("ca.crt".into()),
            ..Default::default()
        };
        assert_eq!(
            args.tls(),
            Some(EtcdTls {
                ca: Some("ca.crt".into()),
                cert: None,
                key: None
            })
        );
    }
}
