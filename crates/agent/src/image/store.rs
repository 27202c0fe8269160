//! The on-disk image store.

use super::{Image, ImageError, ImageSummary};
use std::path::{Path, PathBuf};

/// The image store of one node.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        std::fs::create_dir_all(root).map_err(|source| ImageError::Io {
            context: format!("creating {}", root.display()),
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }
    /// Imports an OCI or `docker save` archive; returns the references imported.
    pub fn import(&self, _archive: &Path) -> Result<Vec<String>, ImageError> {
        Err(ImageError::Invalid("not implemented".into()))
    }
    /// Every image.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        Ok(Vec::new())
    }
    /// The image a reference names, unpacked and ready to run.
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let _ = &self.root;
        Err(ImageError::NotFound(reference.into()))
    }
}
