//! Where event segments live: an `object_store` store, so a bucket is configuration rather than code.
//! This build carries the local file system store; a `file://` URL or a plain path selects it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::internal;
use crate::{Result, ServiceError};

#[derive(Clone, Debug)]
pub struct SegmentStore {
    store: Arc<dyn ObjectStore>,
    /// Set for the local store: its files are fsynced after writing.
    local_root: Option<PathBuf>,
}

impl SegmentStore {
    /// Opens the store at `url`: `file:///abs/dir` or a path (created when missing).
    pub fn open(url: &str) -> Result<SegmentStore> {
        let path = match url.split_once("://") {
            None => PathBuf::from(url),
            Some(("file", rest)) => PathBuf::from(rest),
            Some((scheme, _)) => {
                return Err(ServiceError::Invalid(slope_domain::FieldErrors::single(
                    "event_store",
                    format!("{scheme}:// stores are not built into this binary; use file:///DIR or a path"),
                )));
            }
        };
        SegmentStore::local(&path)
    }

    pub fn local(root: &Path) -> Result<SegmentStore> {
        std::fs::create_dir_all(root).map_err(|e| internal("creating the event store folder", e))?;
        let root = root.canonicalize().map_err(|e| internal("resolving the event store folder", e))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| internal("opening the event store", e))?;
        Ok(SegmentStore { store: Arc::new(store), local_root: Some(root) })
    }

    /// Writes `bytes` at `path` durably: `object_store` writes to a temporary name and renames it into
    /// place; on the local store the file and its folder are then fsynced, so the caller may record the
    /// segment (and acknowledge its batch) once this returns. A crash before the fsync leaves at most a
    /// file that no manifest row names, which readers never open.
    pub async fn put(&self, path: &str, bytes: impl Into<PutPayload>) -> Result<()> {
        self.store.put(&ObjectPath::from(path), bytes.into()).await.map_err(|e| internal("writing a segment", e))?;
        if let Some(root) = &self.local_root {
            let file = root.join(path);
            let root = root.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(&file)?.sync_all()?;
                // Every folder from the file's up to the store's root: `object_store` may just have
                // created some of them, and a new folder's entry lives in its parent.
                let mut dir = file.parent();
                while let Some(d) = dir {
                    std::fs::File::open(d)?.sync_all()?;
                    if d == root {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            })
            .await
            .map_err(|e| internal("syncing a segment", e))?
            .map_err(|e| internal("syncing a segment", e))?;
        }
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<bytes::Bytes> {
        let object = self.store.get(&ObjectPath::from(path)).await.map_err(|e| internal("reading a segment", e))?;
        object.bytes().await.map_err(|e| internal("reading a segment", e))
    }

    /// Reads several segments, in order.
    pub async fn get_all(&self, segments: &[slope_store::SegmentRow]) -> Result<Vec<bytes::Bytes>> {
        let mut out = Vec::with_capacity(segments.len());
        for segment in segments {
            out.push(self.get(&segment.path).await?);
        }
        Ok(out)
    }

    /// Every object in the store with when it was last written, for the sweep of unreferenced ones.
    pub async fn list_all(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        use futures_util::TryStreamExt;
        let listed: Vec<object_store::ObjectMeta> =
            self.store.list(None).try_collect().await.map_err(|e| internal("listing the object store", e))?;
        Ok(listed.into_iter().map(|m| (m.location.to_string(), m.last_modified)).collect())
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(internal("deleting a segment", e)),
        }
    }
}
