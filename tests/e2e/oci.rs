//! Minimal OCI image layout generator for end-to-end tests.
//!
//! `write_image(dir, tag, seed)` writes a complete, tiny, single-platform
//! (linux/amd64) image in OCI image layout format into `dir`:
//!
//! ```text
//! dir/oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! dir/index.json                      one manifest, annotated org.opencontainers.image.ref.name=<tag>
//! dir/blobs/sha256/<layer>            tar+gzip (stored deflate blocks) with one regular file
//! dir/blobs/sha256/<config>           image config (amd64/linux, rootfs.diff_ids)
//! dir/blobs/sha256/<manifest>         application/vnd.oci.image.manifest.v1+json
//! ```
//!
//! The result can be pushed with
//! `skopeo copy --dest-tls-verify=false oci:<dir>:<tag> docker://127.0.0.1:PORT/team/app:<tag>`.
//! The registry stores the manifest bytes unchanged, so the digest the
//! registry reports equals `OciImage::manifest_digest`.
//!
//! Everything is deterministic: the same `seed` gives the same digests, a
//! different `seed` gives a different layer (and therefore different config
//! and manifest digests). `index.json` is overwritten, so use one directory
//! per image (the blobs of several images may share a directory, but only the
//! last written tag is listed).
//!
//! Only dependency: aws-lc-rs's SHA-256 (already regauth's crypto library). No tar/flate2 crates: the ustar header,
//! the gzip wrapper (uncompressed "stored" deflate blocks) and CRC-32 are
//! written by hand. The layer must be gzip: with an uncompressed
//! `...layer.v1.tar` layer, skopeo 1.9 / podman 4.3 gzip it on push, so the
//! registry ends up with a different manifest digest than the one written
//! here (unless containers/image's blob-info cache already knows the
//! uncompressed blob is on the registry - i.e. it is non-deterministic).

#![allow(dead_code)]

use aws_lc_rs::digest;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Name of the single file inside the layer.
pub const LAYER_FILE_NAME: &str = "regauth-e2e.txt";

/// Digests and sizes of what `write_image` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// Directory holding the layout.
    pub dir: PathBuf,
    /// Tag stored as `org.opencontainers.image.ref.name`.
    pub tag: String,
    /// `sha256:<hex>` of the manifest bytes.
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// `sha256:<hex>` of the config blob.
    pub config_digest: String,
    pub config_size: u64,
    /// `sha256:<hex>` of the gzip-compressed layer blob (what the registry stores).
    pub layer_digest: String,
    pub layer_size: u64,
    /// `sha256:<hex>` of the uncompressed tar (`rootfs.diff_ids[0]` in the config).
    pub diff_id: String,
    /// The exact manifest bytes (useful to compare with a registry GET).
    pub manifest: Vec<u8>,
}

impl OciImage {
    /// `oci:<dir>:<tag>` transport reference for skopeo.
    pub fn skopeo_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

/// Write an OCI image layout for `tag` into `dir` (created if missing) and
/// return its digests. The layer contains one file, `regauth-e2e.txt`, whose
/// content is `seed` followed by a newline.
pub fn write_image(dir: &Path, tag: &str, seed: &str) -> io::Result<OciImage> {
    validate_tag(tag)?;
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;

    let mut content = seed.as_bytes().to_vec();
    content.push(b'\n');
    let tar = tar_one_file(LAYER_FILE_NAME, &content)?;
    let diff_id = sha256_digest(&tar);
    // The layer is stored gzip-compressed: skopeo/podman gzip an uncompressed
    // layer when pushing to a registry, which would change the layer digest
    // in the manifest and therefore the manifest digest.
    let layer = gzip_stored(&tar);
    let layer_digest = write_blob(&blobs, &layer)?;

    let config = format!(
        concat!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",",
            "\"config\":{{\"Cmd\":[\"/bin/sh\"]}},",
            "\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}"
        ),
        diff_id
    );
    let config = config.into_bytes();
    let config_digest = write_blob(&blobs, &config)?;

    let manifest = format!(
        concat!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{mt}\",",
            "\"config\":{{\"mediaType\":\"{cmt}\",\"digest\":\"{cd}\",\"size\":{cs}}},",
            "\"layers\":[{{\"mediaType\":\"{lmt}\",\"digest\":\"{ld}\",\"size\":{ls}}}]}}"
        ),
        mt = MEDIA_TYPE_MANIFEST,
        cmt = MEDIA_TYPE_CONFIG,
        cd = config_digest,
        cs = config.len(),
        lmt = MEDIA_TYPE_LAYER_TAR_GZIP,
        ld = layer_digest,
        ls = layer.len(),
    );
    let manifest = manifest.into_bytes();
    let manifest_digest = write_blob(&blobs, &manifest)?;

    let index = format!(
        concat!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{imt}\",\"manifests\":[",
            "{{\"mediaType\":\"{mt}\",\"digest\":\"{md}\",\"size\":{ms},",
            "\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{tag}\"}}}}]}}"
        ),
        imt = MEDIA_TYPE_INDEX,
        mt = MEDIA_TYPE_MANIFEST,
        md = manifest_digest,
        ms = manifest.len(),
        tag = tag,
    );
    fs::write(dir.join("index.json"), index)?;
    fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}")?;

    Ok(OciImage {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest_digest,
        manifest_size: manifest.len() as u64,
        config_digest,
        config_size: config.len() as u64,
        layer_digest,
        layer_size: layer.len() as u64,
        diff_id,
        manifest,
    })
}

/// `sha256:<lowercase hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let sum = digest::digest(&digest::SHA256, data);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in sum.as_ref() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
    s
}

fn write_blob(blobs: &Path, data: &[u8]) -> io::Result<String> {
    let digest = sha256_digest(data);
    let hex = &digest["sha256:".len()..];
    fs::write(blobs.join(hex), data)?;
    Ok(digest)
}

/// Tag grammar from the distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
/// Checked because the tag is pasted into JSON unescaped.
fn validate_tag(tag: &str) -> io::Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || c == b'_' || (i > 0 && (c == b'.' || c == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid OCI tag {tag:?}"),
        ))
    }
}

/// A POSIX ustar archive holding one regular file (mode 0644, uid/gid 0,
/// fixed mtime), followed by the two zero blocks that end an archive.
fn tar_one_file(name: &str, content: &[u8]) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() > 99 || !name.is_ascii() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tar entry name must be 1..=99 ASCII bytes",
        ));
    }
    let mut h = [0u8; 512];
    put(&mut h, 0, name.as_bytes()); // name[100]
    put(&mut h, 100, b"0000644\0"); // mode[8]
    put(&mut h, 108, b"0000000\0"); // uid[8]
    put(&mut h, 116, b"0000000\0"); // gid[8]
    put(&mut h, 124, format!("{:011o}\0", content.len()).as_bytes()); // size[12]
    put(
        &mut h,
        136,
        format!("{:011o}\0", 1_700_000_000u64).as_bytes(),
    ); // mtime[12]
    put(&mut h, 148, b"        "); // chksum[8], spaces while summing
    h[156] = b'0'; // typeflag: regular file
    put(&mut h, 257, b"ustar\0"); // magic[6]
    put(&mut h, 263, b"00"); // version[2]
    put(&mut h, 265, b"root"); // uname[32]
    put(&mut h, 297, b"root"); // gname[32]
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());

    let padded = content.len().div_ceil(512) * 512;
    let mut out = Vec::with_capacity(512 + padded + 1024);
    out.extend_from_slice(&h);
    out.extend_from_slice(content);
    out.resize(512 + padded + 1024, 0);
    Ok(out)
}

/// gzip member (RFC 1952) wrapping `data` in uncompressed deflate blocks
/// (RFC 1951 BTYPE=00). Fixed header (mtime 0, OS 255) for determinism.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32 + data.len() / 65535 * 5);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE=00
        let len = chunk.len() as u16; // chunks() caps at 65535
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE, reflected, poly 0xEDB88320), bitwise; inputs are tiny.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn put(h: &mut [u8; 512], at: usize, bytes: &[u8]) {
    h[at..at + bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_is_valid_ustar() {
        let t = tar_one_file("a.txt", b"hi\n").expect("tar");
        assert_eq!(t.len(), 512 * 4);
        assert_eq!(&t[257..263], b"ustar\0");
        let mut h = [0u8; 512];
        h.copy_from_slice(&t[..512]);
        let stored = std::str::from_utf8(&h[148..154]).expect("utf8").to_string();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).expect("octal"), sum);
        assert_eq!(&t[512..515], b"hi\n");
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        let base = std::env::temp_dir().join(format!("regauth-oci-test-{}", std::process::id()));
        let a = write_image(&base.join("a"), "v1", "one").expect("a");
        let b = write_image(&base.join("b"), "v1", "one").expect("b");
        let c = write_image(&base.join("c"), "v1", "two").expect("c");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_ne!(a.manifest_digest, c.manifest_digest);
        assert_eq!(sha256_digest(&a.manifest), a.manifest_digest);
        assert!(write_image(&base.join("d"), "bad tag", "x").is_err());
        let _ = fs::remove_dir_all(&base);
    }
}
