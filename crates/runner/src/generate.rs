//! Greedy suggestions with a key/value cache: the context is read once, then each further byte costs
//! one position, which is what keeps a suggestion within a few milliseconds.

use candle_core::{D, Tensor};

use crate::checkpoint::Model;
use crate::error::Result;
use crate::model::KvCache;
use crate::tokens::{EOS, decode, encode};

pub struct Generator<'a> {
    model: &'a Model,
}

impl<'a> Generator<'a> {
    pub fn new(model: &'a Model) -> Generator<'a> {
        Generator { model }
    }

    /// Up to `max_bytes` bytes that most likely follow `context`, stopping early at the end token.
    /// Only the last `ctx_len − max_bytes` bytes of the context are read.
    pub fn suggest(&self, context: &str, max_bytes: usize) -> Result<String> {
        let ctx_len = self.model.config().ctx_len;
        let max_bytes = max_bytes.clamp(1, ctx_len / 2);
        let mut ids = encode(context);
        let keep = ctx_len - max_bytes;
        if ids.len() > keep {
            ids.drain(..ids.len() - keep);
        }
        if ids.is_empty() {
            // An empty context starts where a document would: after an end token.
            ids.push(EOS);
        }
        let device = self.model.gpt.device();
        let mut cache = KvCache::default();
        let mut input = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
        let mut out = Vec::with_capacity(max_bytes);
        while out.len() < max_bytes {
            let logits = self.model.gpt.forward(&input, false, Some(&mut cache))?;
            let last = logits.narrow(1, logits.dim(1)? - 1, 1)?.squeeze(1)?.squeeze(0)?;
            let next = last.argmax(D::Minus1)?.to_scalar::<u32>()?;
            if next == EOS {
                break;
            }
            out.push(next);
            input = Tensor::new(&[[next]], device)?;
        }
        Ok(decode(&out))
    }
}
