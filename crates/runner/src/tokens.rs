//! The byte-level vocabulary: ids 0–255 are bytes, 256 ends a completion. No tokenizer file exists, so
//! nothing needs downloading, and any text, in any language, can be encoded.

pub const EOS: u32 = 256;
pub const VOCAB: usize = 257;

pub fn encode(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// Bytes to text, stopping at the first end token; a multi-byte character cut at the end is dropped
/// rather than shown as a replacement character.
pub fn decode(ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids.iter().take_while(|&&t| t < 256).map(|&t| t as u8).collect();
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_cut_characters() {
        assert_eq!(decode(&encode("héllo")), "héllo");
        let mut ids = encode("hé");
        ids.pop();
        assert_eq!(decode(&ids), "h");
        let mut ids = encode("ab");
        ids.push(EOS);
        ids.extend(encode("cd"));
        assert_eq!(decode(&ids), "ab");
    }
}
