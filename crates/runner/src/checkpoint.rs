//! Models and checkpoints on disk. A model directory holds `config.json` and `model.safetensors`; a
//! training checkpoint adds `optimizer.safetensors` and `trainer.json`. Directories are written beside
//! their final name and renamed into place, so a reader never sees half a checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, TrainConfig};
use crate::error::{Result, RunnerError};
use crate::model::Gpt;
use crate::optim::AdamW;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const TRAINER_FILE: &str = "trainer.json";

/// A loaded model, ready to train or to generate.
pub struct Model {
    pub gpt: Gpt,
}

impl Model {
    pub fn new(gpt: Gpt) -> Model {
        Model { gpt }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.gpt.config
    }

    pub fn load(dir: &Path, device: &Device) -> Result<Model> {
        let config: ModelConfig = read_json(&dir.join(CONFIG_FILE))?;
        config.validate().map_err(|e| RunnerError::Checkpoint(format!("{}: {e}", dir.join(CONFIG_FILE).display())))?;
        let tensors = load_tensors(&dir.join(WEIGHTS_FILE), device)?;
        Ok(Model { gpt: Gpt::from_tensors(config, tensors, device)? })
    }

    /// Writes the model to `dir` (replacing what is there) atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_dir(dir, |tmp| {
            write_json(&tmp.join(CONFIG_FILE), &self.gpt.config)?;
            save_tensors(&tmp.join(WEIGHTS_FILE), &self.gpt.tensors())
        })
    }
}

/// Where a training job stands: enough, with the weights and the optimizer's moments, to continue as
/// if it had never stopped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub train: TrainConfig,
    /// The digest of the dataset being trained on; resuming on other data is refused.
    pub dataset_digest: String,
    pub objective: String,
}

pub fn save_training(dir: &Path, gpt: &Gpt, opt: &AdamW, state: &TrainerState) -> Result<()> {
    write_dir(dir, |tmp| {
        write_json(&tmp.join(CONFIG_FILE), &gpt.config)?;
        save_tensors(&tmp.join(WEIGHTS_FILE), &gpt.tensors())?;
        save_tensors(&tmp.join(OPTIMIZER_FILE), &opt.state())?;
        write_json(&tmp.join(TRAINER_FILE), state)
    })
}

/// A training checkpoint: the model, the optimizer's moments and the trainer's state.
pub struct TrainingCheckpoint {
    pub model: Model,
    pub optimizer: BTreeMap<String, Tensor>,
    pub state: TrainerState,
}

pub fn load_training(dir: &Path, device: &Device) -> Result<TrainingCheckpoint> {
    let model = Model::load(dir, device)?;
    let optimizer = load_tensors(&dir.join(OPTIMIZER_FILE), device)?;
    let state: TrainerState = read_json(&dir.join(TRAINER_FILE))?;
    Ok(TrainingCheckpoint { model, optimizer, state })
}

/// True when `dir` holds a complete training checkpoint.
pub fn is_training_checkpoint(dir: &Path) -> bool {
    [CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, TRAINER_FILE].iter().all(|f| dir.join(f).is_file())
}

fn load_tensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let map = candle_core::safetensors::load(path, device)
        .map_err(|e| RunnerError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok(map.into_iter().collect())
}

fn save_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    candle_core::safetensors::save(&map, path)?;
    fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| RunnerError::Checkpoint(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| RunnerError::Checkpoint(format!("{}: {e}", path.display())))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(&serde_json::to_vec_pretty(value).expect("serialisable"))?;
    f.sync_all()?;
    Ok(())
}

/// Fills a sibling temporary directory, then swaps it in for `dir`.
fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dir.file_name().ok_or_else(|| RunnerError::Checkpoint(format!("{} has no name", dir.display())))?;
    let parent = dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    fs::create_dir_all(&parent)?;
    let tmp = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    let old = parent.join(format!(".{}.old", name.to_string_lossy()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    fill(&tmp)?;
    let _ = fs::remove_dir_all(&old);
    if dir.exists() {
        fs::rename(dir, &old)?;
    }
    fs::rename(&tmp, dir)?;
    let _ = fs::remove_dir_all(&old);
    if let Ok(p) = fs::File::open(&parent) {
        let _ = p.sync_all();
    }
    Ok(())
}
