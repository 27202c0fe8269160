//! Images: a content-addressed store under the node's data dir (OCI image
//! layout), import of OCI and `docker save` archives, unpacked layers ready
//! to stack, and resolution of image references.
//!
//! The store is plain files written atomically, so `skiff image import`
//! can add images while the node's agent runs.

use std::path::PathBuf;

pub mod pull;
pub mod reference;
pub mod store;

pub use store::ImageStore;

/// The parts of an image config the runtime needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// ENV, "KEY=value".
    pub env: Vec<String>,
    /// WORKDIR ("" = /).
    pub working_dir: String,
    /// USER ("" = root), "uid", "uid:gid", "name" or "name:group".
    pub user: String,
}

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The config digest ("sha256:…"), what `imageID` reports.
    pub id: String,
    /// The normalized reference it was found by ("docker.io/library/busybox:1.36").
    pub reference: String,
    /// Its config.
    pub config: ImageConfig,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Total size of the compressed layers in bytes.
    pub size: u64,
}

/// One line of `skiff image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// Normalized references pointing at it.
    pub references: Vec<String>,
    /// Config digest.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not in the store.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// An archive or manifest is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A digest did not match the content.
    #[error("digest mismatch for {expected}: got {actual}")]
    Digest {
        /// The digest the manifest named.
        expected: String,
        /// What the content hashed to.
        actual: String,
    },
    /// Filesystem error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
