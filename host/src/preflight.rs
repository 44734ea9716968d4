//! Checks that a file is a complete shared library for this machine before
//! the operating system's loader sees it.
//!
//! `dlopen` maps a file's segments without checking that they lie inside the
//! file; a truncated library then crashes the process with SIGBUS inside the
//! loader, before any abi_stable check can run. This module reads the ELF
//! headers with the `object` crate and refuses a file whose program or
//! section headers point past its end. It runs no code from the file.

use object::{Object, ObjectSection, ObjectSegment};
use std::fmt;

/// Why a file is not a loadable library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightError(String);

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PreflightError {}

/// Checks `data`, the whole content of a candidate plugin file.
///
/// # Errors
///
/// The file is not an object file, not a shared library, built for another
/// architecture, or shorter than its headers say (truncated).
pub fn check(data: &[u8]) -> Result<(), PreflightError> {
    let fail = |cause: String| Err(PreflightError(cause));
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return fail("not a shared library (no ELF header)".into());
    }
    let file = match object::File::parse(data) {
        Ok(file) => file,
        Err(err) => return fail(format!("damaged or truncated library ({err})")),
    };
    if file.kind() != object::ObjectKind::Dynamic {
        return fail(format!("not a shared library (ELF kind {:?})", file.kind()));
    }
    let expected = host_architecture();
    if Some(file.architecture()) != expected {
        return fail(format!(
            "built for {:?}, this host is {:?}",
            file.architecture(),
            expected.unwrap_or(object::Architecture::Unknown)
        ));
    }
    let len = data.len() as u64;
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return fail(format!(
                "truncated library: a segment ends at byte {}, the file has {len}",
                offset.saturating_add(size)
            ));
        }
    }
    for section in file.sections() {
        if let Some((offset, size)) = section.file_range() {
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return fail(format!(
                    "truncated library: section {} ends past the file's {len} bytes",
                    section.name().unwrap_or("?")
                ));
            }
        }
    }
    Ok(())
}

fn host_architecture() -> Option<object::Architecture> {
    use object::Architecture as A;
    match std::env::consts::ARCH {
        "x86_64" => Some(A::X86_64),
        "aarch64" => Some(A::Aarch64),
        "x86" => Some(A::I386),
        "riscv64" => Some(A::Riscv64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_executable() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn refuses_text_and_empty_files() {
        assert!(check(b"")
            .unwrap_err()
            .to_string()
            .contains("no ELF header"));
        assert!(check(b"hello, I am a text file")
            .unwrap_err()
            .to_string()
            .contains("no ELF header"));
    }

    #[test]
    fn refuses_every_truncation_of_an_elf_file() {
        // The test binary is an ELF file of this architecture: cutting it
        // anywhere must be caught by the header checks.
        let data = own_executable();
        for cut in [16, 64, 4096, 65536, data.len() / 2, data.len() - 1] {
            assert!(check(&data[..cut]).is_err(), "cut at {cut} passed");
        }
    }
}
