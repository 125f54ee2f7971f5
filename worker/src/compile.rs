//! What one deploy may cost the node: limits on a guest's code checked before compiling
//! (in the manner of Lambda's package limits), a bound on compiles running at once, and
//! handing the compiler's scratch memory back to the OS when a compile ends.
//!
//! Compiling costs time and memory in proportion to the code: a valid 36 MB module of
//! 100,000 functions takes seconds and hundreds of MB. The limits bound one compile,
//! the semaphore bounds how many run together, and the trim keeps a finished compile
//! from holding its peak for the life of the process.

use protocol::PrepareError;
use wasmparser::{Parser, Payload};

/// Limits on a guest's code, counted over every core module a component nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLimits {
    /// Functions defined (not imported) by the guest.
    pub max_functions: u64,
    /// Bytes of function bodies (the code sections).
    pub max_code_section_bytes: u64,
}

impl Default for CodeLimits {
    fn default() -> Self {
        // Generous for real guests (an interpreter with its standard library is tens of
        // thousands of functions in a few MB of code), small enough that one compile
        // stays within a few hundred MB.
        CodeLimits {
            max_functions: 50_000,
            max_code_section_bytes: 32 << 20,
        }
    }
}

/// How much code a guest binary holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CodeSize {
    pub(crate) functions: u64,
    pub(crate) code_section_bytes: u64,
}

/// Counts the functions and code bytes of a module or component without validating it.
/// A malformed binary stops the count where it breaks; compiling it reports the error
/// in wasmtime's words before any function is compiled.
pub(crate) fn measure(bytes: &[u8]) -> CodeSize {
    let mut size = CodeSize::default();
    // `parse_all` walks the core modules nested in a component as well.
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::FunctionSection(s)) => size.functions += u64::from(s.count()),
            Ok(Payload::CodeSectionStart { range, .. }) => {
                size.code_section_bytes += range.len() as u64;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    size
}

/// Rejects code beyond `limits` with a message the deploying client can act on.
pub(crate) fn check(bytes: &[u8], limits: &CodeLimits) -> Result<CodeSize, PrepareError> {
    let size = measure(bytes);
    if size.functions > limits.max_functions {
        return Err(PrepareError::InvalidCode(format!(
            "The WebAssembly code defines {} functions; a deployment package may define at most {}.",
            size.functions, limits.max_functions
        )));
    }
    if size.code_section_bytes > limits.max_code_section_bytes {
        return Err(PrepareError::InvalidCode(format!(
            "The WebAssembly code sections hold {} bytes of function bodies; a deployment package may hold at most {} bytes.",
            size.code_section_bytes, limits.max_code_section_bytes
        )));
    }
    Ok(size)
}

/// Returns the memory the compiler freed to the allocator back to the OS. glibc keeps
/// freed memory in its arenas (one per compiler thread), so without this a node's RSS
/// stays at the peak of its largest compile.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim_glibc_heap();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_glibc_heap() {
    // SAFETY: `malloc_trim` takes no pointers and only releases free pages of glibc's
    // own arenas; it is safe to call from any thread at any time. Its result (whether
    // memory was released) needs no handling.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module of `n` functions whose bodies are `body_ops` `nop`s each.
    fn module(n: u32, body_ops: usize) -> Vec<u8> {
        let function = format!("(func{})", " nop".repeat(body_ops));
        let text = format!("(module {})", function.repeat(n as usize));
        wat::parse_str(text).expect("generated text is valid")
    }

    #[test]
    fn counts_functions_and_code_bytes() {
        let size = measure(&module(3, 10));
        assert_eq!(size.functions, 3);
        // The count (1 byte) and three bodies of size byte + 12 bytes.
        assert_eq!(size.code_section_bytes, 1 + 3 * 13);
        assert_eq!(measure(b"not wasm"), CodeSize::default());
    }

    #[test]
    fn code_beyond_the_limits_is_the_clients_to_fix() {
        let limits = CodeLimits {
            max_functions: 10,
            max_code_section_bytes: 1_000,
        };
        assert!(check(&module(10, 10), &limits).is_ok());
        match check(&module(11, 1), &limits) {
            Err(PrepareError::InvalidCode(m)) => assert!(m.contains("11 functions"), "{m}"),
            other => panic!("{other:?}"),
        }
        match check(&module(2, 1_000), &limits) {
            Err(PrepareError::InvalidCode(m)) => assert!(m.contains("at most 1000 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
