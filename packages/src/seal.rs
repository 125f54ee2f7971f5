//! Packages at rest: sealed with ChaCha20-Poly1305 in the STREAM construction (64 KiB
//! chunks, each authenticated, the last one marked), so a package of any size is sealed
//! and opened in bounded memory, a truncated or reordered blob never opens, and a blob
//! cannot be passed off as another package's: every chunk is bound to the digest.
//!
//! Layout: the magic, a random 7-byte nonce prefix (one per object), then the chunks.

use std::io::{Read, Write};

use chacha20poly1305::aead::Payload;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit};
use rand::RngCore;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"LAMPKG1\n";
const NONCE_PREFIX: usize = 7;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// The key packages are sealed with: derived from the node's (or cluster's) server key.
#[derive(Clone)]
pub struct SealKey(Key);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    pub fn new(bytes: [u8; 32]) -> SealKey {
        SealKey(Key::from(bytes))
    }
}

/// Why a sealed blob did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("it is not a sealed package")]
    NotSealed,
    #[error("it does not open with this key, or it was altered")]
    WrongKeyOrAltered,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Seals `src` into `dst` for the package `digest`. Returns the plaintext bytes sealed.
pub fn seal(
    key: &SealKey,
    digest: &str,
    src: impl Read,
    mut dst: impl Write,
) -> std::io::Result<u64> {
    let mut prefix = [0u8; NONCE_PREFIX];
    rand::rng().fill_bytes(&mut prefix);
    dst.write_all(MAGIC)?;
    dst.write_all(&prefix)?;
    let aead = ChaCha20Poly1305::new(&key.0);
    let mut encryptor = EncryptorBE32::from_aead(aead, prefix.as_ref().into());
    let aad = digest.as_bytes();
    let sealing_failed = || std::io::Error::other("sealing a package chunk failed");
    let mut chunks = Chunks::new(src, CHUNK);
    let mut total = 0u64;
    loop {
        let (chunk, last) = chunks.next()?;
        total += chunk.len() as u64;
        let payload = Payload { msg: chunk, aad };
        if last {
            let sealed = encryptor
                .encrypt_last(payload)
                .map_err(|_| sealing_failed())?;
            dst.write_all(&sealed)?;
            break;
        }
        let sealed = encryptor
            .encrypt_next(payload)
            .map_err(|_| sealing_failed())?;
        dst.write_all(&sealed)?;
    }
    dst.flush()?;
    Ok(total)
}

/// Opens a blob sealed by [`seal`] for `digest` into `dst`, and returns the SHA-256 of
/// what came out (the caller checks it against the digest) and its size.
pub fn open(
    key: &SealKey,
    digest: &str,
    mut src: impl Read,
    mut dst: impl Write,
) -> Result<([u8; 32], u64), OpenError> {
    let mut header = [0u8; MAGIC.len() + NONCE_PREFIX];
    if read_full(&mut src, &mut header)? < header.len() || &header[..MAGIC.len()] != MAGIC {
        return Err(OpenError::NotSealed);
    }
    let aead = ChaCha20Poly1305::new(&key.0);
    let mut decryptor = DecryptorBE32::from_aead(aead, header[MAGIC.len()..].into());
    let aad = digest.as_bytes();
    let mut chunks = Chunks::new(src, CHUNK + TAG);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let (chunk, last) = chunks.next()?;
        let payload = Payload { msg: chunk, aad };
        let plain = if last {
            let plain = decryptor
                .decrypt_last(payload)
                .map_err(|_| OpenError::WrongKeyOrAltered)?;
            hasher.update(&plain);
            dst.write_all(&plain)?;
            total += plain.len() as u64;
            break;
        } else {
            decryptor
                .decrypt_next(payload)
                .map_err(|_| OpenError::WrongKeyOrAltered)?
        };
        hasher.update(&plain);
        dst.write_all(&plain)?;
        total += plain.len() as u64;
    }
    dst.flush()?;
    Ok((hasher.finalize().into(), total))
}

/// Whether a stored blob starts as a sealed package does.
pub fn is_sealed(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// Fixed-size chunks of a reader, each told whether it is the last: the STREAM
/// construction marks the last chunk, so one chunk is read ahead.
struct Chunks<R> {
    src: R,
    current: Vec<u8>,
    ahead: Vec<u8>,
    ahead_len: Option<usize>,
}

impl<R: Read> Chunks<R> {
    fn new(src: R, size: usize) -> Self {
        Chunks {
            src,
            current: vec![0; size],
            ahead: vec![0; size],
            ahead_len: None,
        }
    }

    fn next(&mut self) -> std::io::Result<(&[u8], bool)> {
        let size = self.current.len();
        let len = match self.ahead_len.take() {
            Some(n) => {
                std::mem::swap(&mut self.current, &mut self.ahead);
                n
            }
            None => read_full(&mut self.src, &mut self.current)?,
        };
        let last = if len < size {
            true
        } else {
            let n = read_full(&mut self.src, &mut self.ahead)?;
            self.ahead_len = Some(n);
            n == 0
        };
        Ok((&self.current[..len], last))
    }
}

fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::new([byte; 32])
    }

    fn round_trip(len: usize) {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut sealed = Vec::new();
        assert_eq!(
            seal(&key(1), "d", plain.as_slice(), &mut sealed).unwrap(),
            len as u64
        );
        assert!(is_sealed(&sealed));
        let mut opened = Vec::new();
        let (sha, n) = open(&key(1), "d", sealed.as_slice(), &mut opened).unwrap();
        assert_eq!(opened, plain, "length {len}");
        assert_eq!(n, len as u64);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&plain)));
    }

    #[test]
    fn any_length_round_trips() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            round_trip(len);
        }
    }

    #[test]
    fn the_plaintext_is_not_in_the_blob() {
        let plain = b"a distinctive run of model weights".repeat(100);
        let mut sealed = Vec::new();
        seal(&key(1), "d", plain.as_slice(), &mut sealed).unwrap();
        assert!(!sealed.windows(34).any(|w| w == &plain[..34]));
    }

    #[test]
    fn a_wrong_key_a_wrong_digest_or_a_cut_blob_never_opens() {
        let plain = vec![7u8; 2 * CHUNK + 5];
        let mut sealed = Vec::new();
        seal(&key(1), "d", plain.as_slice(), &mut sealed).unwrap();
        let fails = |k: &SealKey, digest: &str, blob: &[u8]| {
            open(k, digest, blob, std::io::sink()).is_err()
        };
        assert!(fails(&key(2), "d", &sealed));
        assert!(fails(&key(1), "other", &sealed));
        // Cut at a chunk boundary: the last chunk's mark is missing.
        assert!(fails(
            &key(1),
            "d",
            &sealed[..MAGIC.len() + NONCE_PREFIX + CHUNK + TAG]
        ));
        assert!(fails(&key(1), "d", &sealed[..sealed.len() - 1]));
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(fails(&key(1), "d", &flipped));
        assert!(matches!(
            open(&key(1), "d", &b"plain"[..], std::io::sink()),
            Err(OpenError::NotSealed)
        ));
    }

    #[test]
    fn every_object_gets_its_own_nonce() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal(&key(1), "d", &b"same"[..], &mut a).unwrap();
        seal(&key(1), "d", &b"same"[..], &mut b).unwrap();
        assert_ne!(a, b);
    }
}
