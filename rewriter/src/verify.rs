//! Verifying a rewritten library before it is published (and again on demand).
//!
//! The checks re-parse the output from scratch and decode it with capstone:
//!
//! 1. the new sections exist where the manifest says, the data section starts
//!    with the descriptor magic and `DT_NEEDED` names the runtime;
//! 2. every redirected table slot's relocation points at its stub, and the
//!    stub decodes to `add [counter],1; cmp [slow_path],0; jne; jmp handler`
//!    with the counter and flag of the descriptor and the original handler;
//! 3. every hook site decodes to `jmp trampoline` padded with `int3`, and the
//!    trampoline's displaced copy decodes to the original instructions (RIP
//!    targets resolved) followed by `jmp` back to the end of the site;
//! 4. every detoured function entry decodes to `jmp detour` padded with
//!    `int3`; the detour decodes to `cmp [target slot], 0; je original;
//!    jmp [target slot]` with the descriptor's slot; the moved entry equals
//!    the original instructions followed by `jmp` back (or, for a full
//!    replacement, is byte-identical to the original body, which must be
//!    `mov R, [rdi + ob_type]; jmp [R + tp_dealloc]` with the descriptor's
//!    offsets); the descriptor's detour table matches the manifest;
//! 5. with the original library at hand: its bytes at every hook site are the
//!    ones the analysis saw, every slot not redirected keeps its addend, and
//!    the original `.text` is unchanged outside the patched sites.

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, RelocationFlags};
use std::collections::HashMap;

use crate::crosscheck::{CrossDecoder, Decoded};
use crate::manifest::{unhex, DetourRecord, Manifest};
use retrace_abi::{Descriptor, DetourKind, Offsets, DETOUR_FULL_REPLACEMENT};
use std::mem::{offset_of, size_of};

/// What a successful verification checked.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub stubs_checked: usize,
    pub hooks_checked: usize,
    pub detours_checked: usize,
    pub slots_unchanged: usize,
    pub text_bytes_compared: usize,
    pub compared_with_original: bool,
}

struct Image<'a> {
    file: ElfFile64<'a>,
    relocs: HashMap<u64, (object::elf::RelocationType, i64)>,
}

impl<'a> Image<'a> {
    fn parse(data: &'a [u8], what: &str) -> Result<Self, String> {
        let file = ElfFile64::parse(data).map_err(|e| format!("{what}: cannot parse: {e}"))?;
        let mut relocs = HashMap::new();
        if let Some(iter) = file.dynamic_relocations() {
            for (offset, r) in iter {
                if let RelocationFlags::Elf { r_type } = r.flags() {
                    relocs.insert(offset, (r_type, r.addend()));
                }
            }
        }
        Ok(Image { file, relocs })
    }

    fn bytes_at(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        use object::read::elf::SectionHeader;
        let endian = self.file.endian();
        for s in self.file.sections() {
            let header = s.elf_section_header();
            let allocated = header.sh_flags(endian).contains(object::elf::SHF_ALLOC);
            if !allocated || header.sh_type(endian) == object::elf::SHT_NOBITS {
                continue;
            }
            let (start, size) = (s.address(), s.size());
            if addr >= start && addr + len as u64 <= start + size {
                let data = s.data().ok()?;
                let off = (addr - start) as usize;
                return data.get(off..off + len);
            }
        }
        None
    }

    fn section(&self, name: &str) -> Option<object::read::elf::ElfSection64<'a, '_>> {
        self.file.section_by_name(name)
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, String> {
    Err(msg.into())
}

/// Verify `output` against `manifest` (and `original`, if given and matching the manifest).
pub fn verify(
    output: &[u8],
    manifest: &Manifest,
    original: Option<&[u8]>,
) -> Result<VerifyReport, String> {
    let out = Image::parse(output, "rewritten library")?;
    let orig = match original {
        Some(o) => Some(Image::parse(o, "original library")?),
        None => None,
    };
    let cs = CrossDecoder::new()?;
    let mut report = VerifyReport {
        compared_with_original: orig.is_some(),
        ..Default::default()
    };

    // 1. Sections, descriptor, DT_NEEDED.
    let text = out
        .section(retrace_abi::TEXT_SECTION)
        .ok_or("no .retrace.text section")?;
    let data = out
        .section(retrace_abi::DATA_SECTION)
        .ok_or("no .retrace.data section")?;
    if text.address() != manifest.text_vaddr || data.address() != manifest.data_vaddr {
        return fail(format!(
            "new sections at {:#x}/{:#x}, manifest says {:#x}/{:#x}",
            text.address(),
            data.address(),
            manifest.text_vaddr,
            manifest.data_vaddr
        ));
    }
    let desc = out
        .bytes_at(manifest.data_vaddr, 8)
        .ok_or("descriptor not readable")?;
    if desc != retrace_abi::MAGIC {
        return fail("the data section does not start with the descriptor magic");
    }
    let needed = needed_libraries(output)?;
    if !needed.iter().any(|n| n == retrace_abi::RUNTIME_SONAME) {
        return fail(format!("DT_NEEDED lacks {}", retrace_abi::RUNTIME_SONAME));
    }

    // 2. Stubs.
    let d = manifest.data_vaddr;
    let counts = d + retrace_abi::field::DISPATCH_COUNTS as u64;
    let cur_record = d + retrace_abi::field::CUR_RECORD as u64;
    let common = manifest.dispatch_common;
    let raise_pending = d + retrace_abi::field::RAISE_PENDING as u64;
    if let Some(raise) = manifest.raise {
        if let Err(why) = check_raise_block(&cs, &out, raise, raise_pending) {
            return fail(format!("raise block at {:#x}: {why}", raise.block));
        }
    }
    let raise = manifest.raise.map(|r| (raise_pending, r.block));
    let mut redirected = std::collections::HashSet::new();
    for s in &manifest.stubs {
        redirected.insert(s.slot);
        let (r_type, addend) = *out
            .relocs
            .get(&s.slot)
            .ok_or_else(|| format!("no relocation for slot {:#x} (opcode {})", s.slot, s.opcode))?;
        if r_type != object::elf::R_X86_64_RELATIVE || addend as u64 != s.stub {
            return fail(format!(
                "slot {:#x} (opcode {} {}) points at {addend:#x}, expected stub {:#x}",
                s.slot, s.opcode, s.name, s.stub
            ));
        }
        let bytes = out
            .bytes_at(s.stub, 256)
            .or_else(|| out.bytes_at(s.stub, 128))
            .ok_or_else(|| format!("stub {:#x} not in the output", s.stub))?;
        let insns = decode_until_int3(&cs, bytes, s.stub)?;
        if let Err(why) = check_stub(
            &insns,
            s,
            counts + 8 * s.opcode as u64,
            cur_record,
            d + retrace_abi::field::LAST_TSTATE as u64,
            common,
            raise,
        ) {
            return fail(format!(
                "stub of opcode {} at {:#x} does not decode as expected ({why}): {}",
                s.opcode,
                s.stub,
                insns
                    .iter()
                    .map(|i| i.normalised())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Some(orig) = &orig {
            match orig.relocs.get(&s.slot) {
                Some((_, a)) if *a as u64 == s.handler => {}
                other => {
                    return fail(format!(
                        "slot {:#x}: original handler {:?} differs from the recorded {:#x}",
                        s.slot, other, s.handler
                    ))
                }
            }
        }
        report.stubs_checked += 1;
    }

    // 3. Hooks.
    let mut patched = Vec::new();
    for h in &manifest.hooks {
        let original_bytes =
            unhex(&h.original).ok_or_else(|| format!("hook {:#x}: bad hex in manifest", h.site))?;
        let len = original_bytes.len();
        patched.push((h.site, len));
        let what = format!("hook {:#x} ({})", h.site, h.what);
        check_site_jump(
            &cs,
            &out,
            h.site,
            len,
            h.trampoline,
            &what,
            "its trampoline",
        )?;
        let original_insns = cs.decode(&original_bytes, h.site)?;
        check_moved_copy(
            &cs,
            &out,
            &original_insns,
            (h.displaced_address, h.displaced_len),
            h.site + len as u64,
            &what,
        )?;
        if let Some(orig) = &orig {
            if orig.bytes_at(h.site, len) != Some(&original_bytes[..]) {
                return fail(format!(
                    "hook {:#x} ({}): the original library's bytes differ from what the analysis saw",
                    h.site, h.what
                ));
            }
        }
        report.hooks_checked += 1;
    }

    // 4. Detours.
    let descriptor = out
        .bytes_at(manifest.data_vaddr, size_of::<Descriptor>())
        .ok_or("descriptor not readable")?;
    let count = read_u32(descriptor, offset_of!(Descriptor, detour_count));
    if count as usize != manifest.detours.len() {
        return fail(format!(
            "descriptor lists {count} detours, manifest {}",
            manifest.detours.len()
        ));
    }
    for (i, d) in manifest.detours.iter().enumerate() {
        let len = verify_detour(&cs, &out, orig.as_ref(), descriptor, manifest, i, d)?;
        patched.push((d.site, len));
        report.detours_checked += 1;
    }

    // 5. Everything else unchanged.
    if let Some(orig) = &orig {
        for (slot, (r_type, addend)) in &orig.relocs {
            if redirected.contains(slot) {
                continue;
            }
            match out.relocs.get(slot) {
                Some((t, a)) if t == r_type && a == addend => report.slots_unchanged += 1,
                _ => {
                    return fail(format!(
                        "relocation at {slot:#x} changed but was not redirected"
                    ))
                }
            }
        }
        let ot = orig.section(".text").ok_or("original has no .text")?;
        let nt = out.section(".text").ok_or("output has no .text")?;
        let (oa, od, nd) = (
            ot.address(),
            ot.data().map_err(|e| e.to_string())?,
            nt.data().map_err(|e| e.to_string())?,
        );
        if nt.address() != oa || od.len() != nd.len() {
            return fail(".text moved or changed size");
        }
        let mut masked = nd.to_vec();
        for (site, len) in &patched {
            if *site >= oa && site + *len as u64 <= oa + od.len() as u64 {
                let off = (site - oa) as usize;
                masked[off..off + len].copy_from_slice(&od[off..off + len]);
            }
        }
        if masked != od {
            let first = masked.iter().zip(od).position(|(a, b)| a != b).unwrap_or(0);
            return fail(format!(
                ".text differs from the original outside the hook sites (first at {:#x})",
                oa + first as u64
            ));
        }
        report.text_bytes_compared = od.len();
    }
    Ok(report)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// `qword ptr [base + disp]` (capstone syntax) → `(base, disp)`.
fn qword_memory(operand: &str) -> Option<(&str, u64)> {
    let inner = operand
        .trim()
        .strip_prefix("qword ptr [")?
        .strip_suffix(']')?;
    let (base, disp) = match inner.split_once(" + ") {
        Some((b, d)) => (b, d),
        None => (inner, "0"),
    };
    let disp = match disp.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => disp.parse().ok()?,
    };
    Some((base, disp))
}

/// Check the full-replacement body: exactly `mov R, [rdi + ob_type]; jmp [R + tp_dealloc]`.
fn check_dealloc_body(insns: &[Decoded], ob_type: u32, tp_dealloc: u32) -> Result<(), String> {
    let [load, jump] = insns else {
        return Err(format!("{} instructions, expected 2", insns.len()));
    };
    let (reg, source) = load
        .op_str
        .split_once(", ")
        .ok_or_else(|| format!("unexpected `{}`", load.normalised()))?;
    let load_ok = load.mnemonic == "mov"
        && qword_memory(source) == Some(("rdi", u64::from(ob_type)))
        && reg.len() == 3
        && reg.starts_with('r');
    let jump_ok =
        jump.mnemonic == "jmp" && qword_memory(&jump.op_str) == Some((reg, u64::from(tp_dealloc)));
    if load_ok && jump_ok {
        Ok(())
    } else {
        Err(format!(
            "`{}; {}` is not `mov R, [rdi + {ob_type:#x}]; jmp [R + {tp_dealloc:#x}]`",
            load.normalised(),
            jump.normalised()
        ))
    }
}

/// Verify detour `index`; returns the number of bytes patched at its site.
fn verify_detour(
    cs: &CrossDecoder,
    out: &Image<'_>,
    orig: Option<&Image<'_>>,
    descriptor: &[u8],
    manifest: &Manifest,
    index: usize,
    d: &DetourRecord,
) -> Result<usize, String> {
    let what = format!("detour {} of {} at {:#x}", index, d.function, d.site);
    let original_bytes =
        unhex(&d.original).ok_or_else(|| format!("{what}: bad hex in manifest"))?;
    let len = original_bytes.len();
    if len < 5 {
        return fail(format!("{what}: displaces only {len} bytes"));
    }
    // The descriptor's entry and target slot.
    let info_at = retrace_abi::field::DETOURS + index * size_of::<retrace_abi::DetourInfo>();
    let kind = DetourKind::from_u32(read_u32(descriptor, info_at));
    let flags = read_u32(descriptor, info_at + 4);
    let site = read_u64(descriptor, info_at + 8);
    let original = read_u64(descriptor, info_at + 16);
    let expect_original = if d.full_replacement {
        0
    } else {
        d.moved_address
    };
    let full = flags & DETOUR_FULL_REPLACEMENT != 0;
    if kind.map(|k| format!("{k:?}")).as_deref() != Some(d.kind.as_str())
        || site != d.site
        || full != d.full_replacement
        || original != expect_original
    {
        return fail(format!(
            "{what}: descriptor entry (kind {kind:?}, flags {flags}, site {site:#x}, original {original:#x}) does not match the manifest"
        ));
    }
    let slot = manifest.data_vaddr + (retrace_abi::field::DETOUR_TARGETS + 8 * index) as u64;
    if d.target_slot != slot {
        return fail(format!(
            "{what}: target slot {:#x}, descriptor slot is {slot:#x}",
            d.target_slot
        ));
    }
    if read_u64(descriptor, retrace_abi::field::DETOUR_TARGETS + 8 * index) != 0 {
        return fail(format!("{what}: target slot is not zero in the file"));
    }
    // The site.
    check_site_jump(cs, out, d.site, len, d.detour, &what, "the detour")?;
    // The detour: cmp [slot], 0; je moved; jmp [slot].
    // The last detour may end less than 32 bytes before the end of the section.
    let code = (20..=32)
        .rev()
        .find_map(|n| out.bytes_at(d.detour, n))
        .ok_or_else(|| format!("{what}: detour code not in the output"))?;
    let insns = decode_prefix(cs, code, d.detour, 3)?;
    let ok = insns[0].mnemonic == "cmp"
        && insns[0].rip_target == Some(slot)
        && insns[0].imm == Some(0)
        && insns[0].op_str.starts_with("qword ptr")
        && insns[1].mnemonic == "je"
        && insns[1].imm == Some(d.moved_address as i64)
        && insns[2].mnemonic == "jmp"
        && insns[2].rip_target == Some(slot)
        && insns[2].op_str.starts_with("qword ptr");
    if !ok {
        return fail(format!(
            "{what}: detour does not decode as `cmp [slot], 0; je original; jmp [slot]`: {}",
            insns
                .iter()
                .map(Decoded::normalised)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    // The moved entry.
    let original_insns = cs.decode(&original_bytes, d.site)?;
    if d.full_replacement {
        let moved = out
            .bytes_at(d.moved_address, d.moved_len)
            .ok_or_else(|| format!("{what}: fallback body not in the output"))?;
        if moved != &original_bytes[..] {
            return fail(format!("{what}: fallback body differs from the original"));
        }
        let offsets = offset_of!(Descriptor, offsets);
        let ob_type = read_u32(descriptor, offsets + offset_of!(Offsets, object_ob_type));
        let tp_dealloc = read_u32(descriptor, offsets + offset_of!(Offsets, type_tp_dealloc));
        check_dealloc_body(&original_insns, ob_type, tp_dealloc)
            .map_err(|e| format!("{what}: full replacement of an unverified body: {e}"))?;
    } else {
        check_moved_copy(
            cs,
            out,
            &original_insns,
            (d.moved_address, d.moved_len),
            d.site + len as u64,
            &what,
        )?;
    }
    if let Some(orig) = orig {
        if orig.bytes_at(d.site, len) != Some(&original_bytes[..]) {
            return fail(format!(
                "{what}: the original library's bytes differ from what the analysis saw"
            ));
        }
    }
    Ok(len)
}

/// The first 5 bytes at `site` are `jmp target` and the rest of the `len`
/// displaced bytes are `int3` padding (hooks and detours alike).
fn check_site_jump(
    cs: &CrossDecoder,
    out: &Image<'_>,
    site: u64,
    len: usize,
    target: u64,
    what: &str,
    target_name: &str,
) -> Result<(), String> {
    let at_site = out
        .bytes_at(site, len)
        .ok_or_else(|| format!("{what}: site not in the output"))?;
    let jump = cs.decode(&at_site[..5], site)?;
    if jump.len() != 1 || jump[0].mnemonic != "jmp" || jump[0].imm != Some(target as i64) {
        return fail(format!(
            "{what}: the site does not jump to {target_name} {target:#x}"
        ));
    }
    if at_site[5..].iter().any(|b| *b != 0xcc) {
        return fail(format!("{what}: padding is not int3"));
    }
    Ok(())
}

/// The relocated copy at `moved = (address, len)` decodes to the original
/// instructions (RIP targets resolved) and is followed by `jmp resume`.
fn check_moved_copy(
    cs: &CrossDecoder,
    out: &Image<'_>,
    original: &[Decoded],
    moved: (u64, usize),
    resume: u64,
    what: &str,
) -> Result<(), String> {
    let (address, len) = moved;
    let bytes = out
        .bytes_at(address, len + 5)
        .ok_or_else(|| format!("{what}: relocated copy not in the output"))?;
    let copy = cs.decode(&bytes[..len], address)?;
    let a: Vec<String> = original.iter().map(Decoded::normalised).collect();
    let b: Vec<String> = copy.iter().map(Decoded::normalised).collect();
    if a != b {
        return fail(format!(
            "{what}: displaced instructions differ: original [{}], moved [{}]",
            a.join("; "),
            b.join("; ")
        ));
    }
    let back = cs.decode(&bytes[len..], address + len as u64)?;
    if back.len() != 1 || back[0].mnemonic != "jmp" || back[0].imm != Some(resume as i64) {
        return fail(format!(
            "{what}: relocated copy does not return to {resume:#x}"
        ));
    }
    Ok(())
}

/// Decode at least `n` instructions from the start of `bytes`.
/// Decodes from `addr` up to the first `int3` (stub padding) or the end.
fn decode_until_int3(cs: &CrossDecoder, bytes: &[u8], addr: u64) -> Result<Vec<Decoded>, String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < bytes.len() && bytes[off] != 0xcc {
        let insn = decode_prefix(cs, &bytes[off..], addr + off as u64, 1)?
            .pop()
            .ok_or_else(|| format!("undecodable code at {:#x}", addr + off as u64))?;
        off += insn.len;
        out.push(insn);
    }
    Ok(out)
}

/// A dispatch stub (see `trampolines::dispatch`): it starts by loading the
/// descriptor's `cur_record`; it leaves only by jumping to its handler; its
/// slow path counts into its own counter and calls the shared dispatch entry;
/// every other branch stays inside the stub.
/// The stubs' shared raise block: `mov qword [rip + raise_pending], 0;
/// jmp raise_entry`, where the raise entry is untouched original code that
/// loads a register from the frame (see `symbols::code::raise`).
fn check_raise_block(
    cs: &CrossDecoder,
    out: &Image,
    raise: crate::manifest::RaiseRecord,
    raise_pending: u64,
) -> Result<(), String> {
    let bytes = out.bytes_at(raise.block, 32).ok_or("not in the output")?;
    let insns = decode_prefix(cs, bytes, raise.block, 2)?;
    let (clear, jump) = (&insns[0], &insns[1]);
    if clear.mnemonic != "mov" || clear.rip_target != Some(raise_pending) || clear.imm != Some(0) {
        return Err(format!(
            "does not clear raise_pending: {}",
            clear.normalised()
        ));
    }
    if jump.mnemonic != "jmp" || jump.imm != Some(raise.entry as i64) {
        return Err(format!(
            "does not jump to the raise entry: {}",
            jump.normalised()
        ));
    }
    let entry = out
        .bytes_at(raise.entry, 16)
        .ok_or("raise entry not in the output")?;
    let load = decode_prefix(cs, entry, raise.entry, 1)?;
    if load[0].mnemonic != "mov" || !load[0].op_str.contains('[') {
        return Err(format!(
            "the raise entry {:#x} is not a load: {}",
            raise.entry,
            load[0].normalised()
        ));
    }
    Ok(())
}

fn check_stub(
    insns: &[Decoded],
    s: &crate::manifest::StubRecord,
    counter: u64,
    cur_record: u64,
    last_tstate: u64,
    common: u64,
    raise: Option<(u64, u64)>,
) -> Result<(), String> {
    let first = insns.first().ok_or("empty stub")?;
    let entry_exit = s.name == "INTERPRETER_EXIT";
    if entry_exit {
        // mov S0, [rsp + tstate]; cmp S0, [rip + last_tstate]
        let second = insns.get(1).ok_or("truncated stub")?;
        if first.mnemonic != "mov"
            || !first.op_str.contains("[rsp")
            || second.mnemonic != "cmp"
            || second.rip_target != Some(last_tstate)
        {
            return Err("the entry-frame stub does not compare the thread state".into());
        }
    } else if first.mnemonic != "mov" || first.rip_target != Some(cur_record) {
        return Err("does not start by loading cur_record".into());
    }
    let start = s.stub;
    let end = insns.last().map_or(start, |i| i.address + i.len as u64);
    let mut exits = 0;
    let mut raises = 0usize;
    let mut counted = false;
    let mut calls = 0;
    for i in insns {
        match i.mnemonic.as_str() {
            "add" if i.rip_target.is_some() => {
                if i.rip_target != Some(counter) || i.imm != Some(1) {
                    return Err(format!("adds to {:?}", i.rip_target));
                }
                counted = true;
            }
            "call" => {
                if i.imm != Some(common as i64) {
                    return Err("calls something other than the dispatch entry".into());
                }
                calls += 1;
            }
            m if m.starts_with('j') => {
                let target = i.imm.ok_or("indirect branch")? as u64;
                if (start..end).contains(&target) {
                    continue;
                }
                if m == "jne" && raise.is_some_and(|(_, block)| block == target) {
                    raises += 1;
                    continue;
                }
                if m != "jmp" || target != s.handler {
                    return Err(format!("branches out to {target:#x}"));
                }
                exits += 1;
            }
            "cmp"
                if raise.is_some_and(|(pending, _)| i.rip_target == Some(pending))
                    && i.imm != Some(0) =>
            {
                return Err("compares raise_pending with something other than 0".into());
            }
            "cmp" if raise.is_some_and(|(pending, _)| i.rip_target == Some(pending)) => {}
            _ if i.rip_target.is_some()
                && i.rip_target != Some(cur_record)
                && !(entry_exit && i.rip_target == Some(last_tstate)) =>
            {
                return Err(format!("touches {:?}", i.rip_target));
            }
            _ => {}
        }
    }
    if !counted || calls != 1 || exits != 2 {
        return Err(format!(
            "counted {counted}, {calls} calls, {exits} exits to the handler"
        ));
    }
    // Every stub but the entry frame's checks raise_pending after the call.
    let expected_raises = usize::from(raise.is_some() && !entry_exit);
    if raises != expected_raises {
        return Err(format!(
            "{raises} branches to the raise block, expected {expected_raises}"
        ));
    }
    Ok(())
}

fn decode_prefix(
    cs: &CrossDecoder,
    bytes: &[u8],
    addr: u64,
    n: usize,
) -> Result<Vec<Decoded>, String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while out.len() < n {
        // Decode one instruction at a time (x86 instructions are at most 15 bytes).
        let end = (off + 15).min(bytes.len());
        let mut got = None;
        for l in 1..=end - off {
            if let Ok(v) = cs.decode(&bytes[off..off + l], addr + off as u64) {
                if v.len() == 1 {
                    got = v.into_iter().next();
                    break;
                }
            }
        }
        let insn = got.ok_or_else(|| format!("undecodable code at {:#x}", addr + off as u64))?;
        off += insn.len;
        out.push(insn);
    }
    Ok(out)
}

fn needed_libraries(data: &[u8]) -> Result<Vec<String>, String> {
    use object::read::elf::{Dyn, FileHeader, SectionHeader};
    let header =
        object::elf::FileHeader64::<object::Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let sections = header.sections(endian, data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        if let Some((dynamic, _)) = s.dynamic(endian, data).map_err(|e| e.to_string())? {
            let strings = sections
                .strings(endian, data, s.link(endian))
                .map_err(|e| e.to_string())?;
            for d in dynamic {
                if d.d_tag(endian) == object::elf::DT_NEEDED {
                    let name = d.string(endian, strings).map_err(|e| e.to_string())?;
                    out.push(String::from_utf8_lossy(name).into_owned());
                }
            }
            let _ = i;
        }
    }
    Ok(out)
}
