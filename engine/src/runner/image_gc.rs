//! Image garbage collection: runner images (`slipway-runner/…`) this engine
//! used are removed least recently used first while their total size is
//! over the budget. Images the engine has no record of (another engine's,
//! or older than its store) are never touched, nor images a container
//! uses. Sizes are Docker's, shared layers counted in each image.

use std::collections::HashMap;
use std::sync::Arc;

use super::LABEL_MANAGED;
use crate::queue::JobStore;
use crate::queue::store::ImageUse;
use crate::runtime::Runtime;

/// Why a collection could not run (it is tried again after the next job).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The runtime could not list its images.
    #[error("listing images: {0}")]
    List(#[from] crate::runtime::RuntimeError),
    /// The store could not say which images this engine used.
    #[error(transparent)]
    Store(#[from] crate::queue::StoreError),
}

/// Remove least-recently-used images until the tracked ones fit in
/// `budget_bytes`; returns the removed tags.
pub async fn collect(
    runtime: &Runtime,
    store: &Arc<dyn JobStore>,
    budget_bytes: u64,
) -> Result<Vec<String>, GcError> {
    let images = runtime
        .list_images(&format!("{LABEL_MANAGED}=true"))
        .await?;
    let uses: HashMap<String, u64> = store
        .image_uses()
        .await?
        .into_iter()
        .map(|ImageUse { tag, last_used_ms }| (tag, last_used_ms))
        .collect();
    // (last use, tag, size, in use) of the images this engine knows.
    let mut known: Vec<(u64, String, u64, bool)> = images
        .iter()
        .flat_map(|image| {
            image.tags.iter().filter_map(|tag| {
                uses.get(tag)
                    .map(|at| (*at, tag.clone(), image.size, image.containers > 0))
            })
        })
        .collect();
    let mut total: u64 = known.iter().map(|k| k.2).sum();
    known.sort();
    let mut removed = Vec::new();
    for (_, tag, size, in_use) in known {
        if total <= budget_bytes {
            break;
        }
        if in_use {
            continue;
        }
        match runtime.remove_image(&tag).await {
            Ok(_) => {
                total = total.saturating_sub(size);
                let _ = store.forget_image(&tag).await;
                tracing::info!(image = %tag, size, "image GC: removed the least recently used image");
                removed.push(tag);
            }
            // In use by a container, or just being used: next time.
            Err(e) => tracing::debug!(image = %tag, error = %e, "image GC: kept"),
        }
    }
    Ok(removed)
}
