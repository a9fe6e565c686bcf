//! The relay's static Noise key: created once in the data directory (mode 0600), loaded at
//! every start; its public half is written to `relay.pub` for clients to pin.

use std::io::Write;
use std::path::Path;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// File holding the 32-byte X25519 secret.
pub const SECRET_FILE: &str = "relay.key";
/// File holding the public key as hex, for operators and clients.
pub const PUBLIC_FILE: &str = "relay.pub";

/// Load the static secret from `dir`, creating it on first start. Returns (secret, public).
pub fn load_or_create(dir: &Path) -> std::io::Result<(Zeroizing<[u8; 32]>, [u8; 32])> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(SECRET_FILE);
    let secret = match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let mut secret = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} must hold exactly 32 bytes", path.display()),
                ));
            }
            secret.copy_from_slice(&bytes);
            secret
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut secret[..]);
            write_private(&path, &secret[..])?;
            secret
        }
        Err(e) => return Err(e),
    };
    let public = hush_net::noise::public_key(&secret);
    std::fs::write(dir.join(PUBLIC_FILE), format!("{}\n", hex::encode(public)))?;
    Ok((secret, public))
}

/// Write to a temporary file, fsync, rename into place, fsync the directory: a crash leaves
/// either no key or the whole key, never an empty file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
