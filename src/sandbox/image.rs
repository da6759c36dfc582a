//! Rewriting the CPython module: the exports the host needs, and booted-interpreter images.
//!
//! The runtime exports only `memory` and `_start`, so nothing outside can call into a booted
//! interpreter, and wizer cannot snapshot it. Two rewrites of the module's bytes fix that:
//! - [`boot_module`]: the original module plus exports of its function table and its stack pointer.
//!   The module keeps no usable symbols (its DWARF has no addresses), so the host reaches CPython's
//!   C functions the way CPython itself does: through function pointers in its objects, which are
//!   indices into that table.
//! - [`image_module`]: the boot module with the memory and stack pointer of a booted interpreter
//!   baked in as its initial state (data segments, memory size, global initialiser), plus the
//!   addresses the host calls it with as exported constants, and no custom sections. wasmtime maps
//!   such a module's memory copy-on-write, so instantiating it is a booted interpreter for the cost
//!   of a `mmap`, and every instance starts from the very same bytes.
//!
//! Works on raw sections (id, size, payload); parses only the sections it rewrites. Knows nothing
//! of jobs or Python.

use std::ops::Range;

/// The exports the host looks things up by.
pub(crate) const TABLE: &str = "codegym_table";
pub(crate) const STACK_POINTER: &str = "codegym_stack_pointer";
/// An image's constants: the address of the driver's `run_one` function object, of the empty
/// tuple it is called with, and the table index of the C function that calls it.
pub(crate) const RUN_ONE: &str = "codegym_run_one";
pub(crate) const NO_ARGS: &str = "codegym_no_args";
pub(crate) const CALL: &str = "codegym_call";

const SECTION_CUSTOM: u8 = 0;
const SECTION_MEMORY: u8 = 5;
const SECTION_GLOBAL: u8 = 6;
const SECTION_EXPORT: u8 = 7;
const SECTION_DATA: u8 = 11;
const SECTION_DATA_COUNT: u8 = 12;
const EXPORT_TABLE: u8 = 1;
const EXPORT_GLOBAL: u8 = 3;
/// Granularity at which all-zero stretches of a snapshot are left out of the data segments.
const CHUNK: usize = 4096;

/// The module does not have the shape this rewrite relies on.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the Python runtime module: {0}")]
pub struct ImageError(pub String);

fn error(message: impl Into<String>) -> ImageError {
    ImageError(message.into())
}

/// One section of a module: its id and the byte range of its payload.
struct Section {
    id: u8,
    payload: Range<usize>,
}

fn sections(module: &[u8]) -> Result<Vec<Section>, ImageError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(error("not a WebAssembly module"));
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < module.len() {
        let id = module[at];
        let (size, next) = read_leb(module, at + 1)?;
        let end = next.checked_add(size as usize).filter(|&e| e <= module.len()).ok_or_else(|| error("truncated section"))?;
        out.push(Section { id, payload: next..end });
        at = end;
    }
    Ok(out)
}

fn read_leb(bytes: &[u8], mut at: usize) -> Result<(u32, usize), ImageError> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at).ok_or_else(|| error("truncated LEB128"))?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map(|v| (v, at)).map_err(|_| error("LEB128 out of range"));
        }
    }
    Err(error("LEB128 too long"))
}

fn write_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_i32(out: &mut Vec<u8>, value: i32) {
    let mut value = i64::from(value);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    write_u32(out, name.len() as u32);
    out.extend_from_slice(name.as_bytes());
}

fn push_section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    write_u32(out, payload.len() as u32);
    out.extend_from_slice(payload);
}

/// The export section with `extra` (name, kind, index) appended.
fn exports_with(module: &[u8], section: &Section, extra: &[(&str, u8, u32)]) -> Result<Vec<u8>, ImageError> {
    let payload = &module[section.payload.clone()];
    let (count, body) = read_leb(payload, 0)?;
    let mut out = Vec::with_capacity(payload.len() + 64);
    write_u32(&mut out, count + extra.len() as u32);
    out.extend_from_slice(&payload[body..]);
    for &(name, kind, index) in extra {
        write_name(&mut out, name);
        out.push(kind);
        write_u32(&mut out, index);
    }
    Ok(out)
}

/// The original module plus exports of its function table and its stack pointer (global 0, the
/// only global of this runtime).
pub(crate) fn boot_module(module: &[u8]) -> Result<Vec<u8>, ImageError> {
    let extra = [(TABLE, EXPORT_TABLE, 0), (STACK_POINTER, EXPORT_GLOBAL, 0)];
    let mut out = module[..8].to_vec();
    for section in sections(module)? {
        let payload = match section.id {
            SECTION_EXPORT => exports_with(module, &section, &extra)?,
            _ => module[section.payload.clone()].to_vec(),
        };
        push_section(&mut out, section.id, &payload);
    }
    Ok(out)
}

/// A booted interpreter's state, read off its instance.
pub(crate) struct Snapshot<'a> {
    pub memory: &'a [u8],
    pub stack_pointer: i32,
    /// The constants exported as [`RUN_ONE`], [`NO_ARGS`] and [`CALL`].
    pub run_one: i32,
    pub no_args: i32,
    pub call: i32,
}

/// `boot` (a module made by [`boot_module`]) with `snapshot` as its initial state, its constants
/// exported, and no custom sections.
pub(crate) fn image_module(boot: &[u8], snapshot: &Snapshot) -> Result<Vec<u8>, ImageError> {
    const PAGE: usize = 64 << 10;
    if !snapshot.memory.len().is_multiple_of(PAGE) {
        return Err(error("the snapshot is not a whole number of pages"));
    }
    let mut out = boot[..8].to_vec();
    for section in sections(boot)? {
        let payload = &boot[section.payload.clone()];
        match section.id {
            SECTION_CUSTOM => continue,
            SECTION_MEMORY => push_section(&mut out, section.id, &memory_section(payload, snapshot.memory.len() / PAGE)?),
            SECTION_GLOBAL => push_section(&mut out, section.id, &global_section(payload, snapshot)?),
            SECTION_EXPORT => {
                let constants = [(RUN_ONE, EXPORT_GLOBAL, 1), (NO_ARGS, EXPORT_GLOBAL, 2), (CALL, EXPORT_GLOBAL, 3)];
                push_section(&mut out, section.id, &exports_with(boot, &section, &constants)?)
            }
            SECTION_DATA => push_section(&mut out, section.id, &data_section(snapshot.memory)),
            SECTION_DATA_COUNT => {
                let mut count = Vec::new();
                write_u32(&mut count, data_segments(snapshot.memory).len() as u32);
                push_section(&mut out, section.id, &count);
            }
            _ => push_section(&mut out, section.id, payload),
        }
    }
    Ok(out)
}

/// One memory with its minimum raised to `pages` (the limits flag and any maximum kept).
fn memory_section(payload: &[u8], pages: usize) -> Result<Vec<u8>, ImageError> {
    let (count, at) = read_leb(payload, 0)?;
    let flags = *payload.get(at).ok_or_else(|| error("truncated memory section"))?;
    if count != 1 || flags & !1 != 0 {
        return Err(error(format!("expected one 32-bit memory, found {count} (flags {flags:#x})")));
    }
    let (_, after_min) = read_leb(payload, at + 1)?;
    let mut out = vec![1, flags];
    write_u32(&mut out, pages as u32);
    out.extend_from_slice(&payload[after_min..]);
    Ok(out)
}

/// The runtime's one global (the mutable i32 stack pointer) initialised to the snapshot's, then the
/// snapshot's constants as immutable i32 globals.
fn global_section(payload: &[u8], snapshot: &Snapshot) -> Result<Vec<u8>, ImageError> {
    // count, then per global: type i32 (0x7f), mutability, init: i32.const (0x41) <value> end (0x0b)
    let (count, at) = read_leb(payload, 0)?;
    if count != 1 || payload.get(at..at + 3) != Some(&[0x7f, 1, 0x41][..]) {
        return Err(error("expected exactly one global, the mutable i32 stack pointer"));
    }
    let mut out = vec![4];
    for (mutable, value) in [(1, snapshot.stack_pointer), (0, snapshot.run_one), (0, snapshot.no_args), (0, snapshot.call)] {
        out.extend_from_slice(&[0x7f, mutable, 0x41]);
        write_i32(&mut out, value);
        out.push(0x0b);
    }
    Ok(out)
}

/// The non-zero stretches of `memory`, at [`CHUNK`] granularity.
fn data_segments(memory: &[u8]) -> Vec<Range<usize>> {
    let mut segments: Vec<Range<usize>> = Vec::new();
    for (i, chunk) in memory.chunks(CHUNK).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        let start = i * CHUNK;
        match segments.last_mut() {
            Some(last) if last.end == start => last.end = start + chunk.len(),
            _ => segments.push(start..start + chunk.len()),
        }
    }
    segments
}

/// Active data segments of memory 0 that recreate `memory`.
fn data_section(memory: &[u8]) -> Vec<u8> {
    let segments = data_segments(memory);
    let mut out = Vec::with_capacity(memory.len() / 2);
    write_u32(&mut out, segments.len() as u32);
    for segment in segments {
        out.push(0); // active, memory 0
        out.push(0x41);
        write_i32(&mut out, segment.start as i32);
        out.push(0x0b);
        write_u32(&mut out, segment.len() as u32);
        out.extend_from_slice(&memory[segment]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips() {
        for value in [0u32, 1, 127, 128, 300, 1 << 20, u32::MAX] {
            let mut out = Vec::new();
            write_u32(&mut out, value);
            assert_eq!(read_leb(&out, 0).unwrap(), (value, out.len()));
        }
        let mut out = Vec::new();
        write_i32(&mut out, 524_288);
        assert_eq!(out, [0x80, 0x80, 0x20]);
        out.clear();
        write_i32(&mut out, -1);
        assert_eq!(out, [0x7f]);
    }

    #[test]
    fn zero_stretches_are_left_out_of_the_data() {
        let mut memory = vec![0u8; CHUNK * 6];
        memory[CHUNK + 5] = 1;
        memory[CHUNK * 2] = 2;
        memory[CHUNK * 5 + 9] = 3;
        assert_eq!(data_segments(&memory), [CHUNK..CHUNK * 3, CHUNK * 5..CHUNK * 6]);
    }
}
