//! Human-readable rendering of an analysis (`rewriter inspect` without `--json`).

use std::fmt::Write;
use symbols::{Analysis, Location, TableEntryKind};

fn loc(l: &Location) -> String {
    match l {
        Location::Reg(r) => r.name().to_string(),
        Location::Stack(off) => format!("[rsp{off:+#x}]"),
        Location::Unavailable => "unavailable".into(),
    }
}

/// Render everything the analysis derived, section by section.
pub fn render(a: &Analysis) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "library     {}", a.library.path);
    let _ = writeln!(
        s,
        "            {} bytes, soname {}, build-id {}, sha256 {}",
        a.library.size,
        a.library.soname.as_deref().unwrap_or("-"),
        a.library.build_id.as_deref().unwrap_or("-"),
        a.library.sha256
    );
    let _ = writeln!(
        s,
        "version     CPython {} (Py_Version {:#010x})",
        a.version,
        a.version.hex()
    );
    let ranges: Vec<String> = a
        .eval
        .ranges
        .iter()
        .map(|r| format!("[{:#x}, {:#x})", r.start, r.end))
        .collect();
    let _ = writeln!(s, "eval        {} {}", a.eval.symbol, ranges.join(" "));
    if a.unsupported.is_empty() {
        let _ = writeln!(s, "support     instrumentable");
    } else {
        let _ = writeln!(s, "support     analysis only:");
        for u in &a.unsupported {
            let _ = writeln!(s, "            - {u}");
        }
    }

    if let Some(t) = &a.table {
        let redirected = t.entries.iter().filter(|e| e.kind.is_redirected()).count();
        let _ = writeln!(
            s,
            "\nopcode table {} at {:#x}: 256 slots (R_X86_64_RELATIVE), {} redirected",
            t.symbol, t.address, redirected
        );
        for e in &t.entries {
            if e.kind == TableEntryKind::Unknown {
                continue;
            }
            let _ = writeln!(
                s,
                "  {:3} {:<40} slot {:#x} -> handler {:#x}{}",
                e.opcode,
                e.name,
                e.slot,
                e.target,
                if e.kind.is_redirected() {
                    String::new()
                } else {
                    format!("  (not redirected: {:?})", e.kind)
                }
            );
        }
        let unknown = t
            .entries
            .iter()
            .filter(|e| e.kind == TableEntryKind::Unknown)
            .count();
        let _ = writeln!(s, "  ({unknown} slots lead to _unknown_opcode)");
    }
    if let Some(m) = &a.opcode_meta {
        let with_caches = m.caches.iter().filter(|c| **c > 0).count();
        let _ = writeln!(
            s,
            "\nopcode meta: {with_caches} opcodes with inline caches, deopt map of {} entries",
            m.deopt.len()
        );
    }

    let _ = writeln!(s, "\ndispatch sites: {}", a.dispatch_sites.len());
    for d in &a.dispatch_sites {
        let line = d
            .line
            .as_ref()
            .map(|l| format!("{}:{}", l.file, l.line))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  load {:#x} jmp {:#x} base {} {}",
            d.load,
            d.jump,
            d.base.name(),
            line
        );
    }

    if let Some(r) = &a.registers {
        let _ = writeln!(s, "\nregister layout at handler entry:");
        for (name, l) in [
            ("frame", &r.frame),
            ("next_instr", &r.next_instr),
            ("stack_pointer", &r.stack_pointer),
            ("oparg", &r.oparg),
            ("opcode", &r.opcode),
            ("tstate", &r.tstate),
        ] {
            let _ = writeln!(s, "  {name:<14} {}", loc(l));
        }
        let names = |v: &[symbols::Gpr]| v.iter().map(|g| g.name()).collect::<Vec<_>>().join(" ");
        let _ = writeln!(s, "  live-in (any) {}", names(&r.live_in_any));
        let _ = writeln!(s, "  dead (all)    {}", names(&r.dead_everywhere));
        let _ = writeln!(s, "  flags live    {}", r.flags_live);
        for e in &r.evidence {
            let _ = writeln!(s, "  evidence: {e}");
        }
    }

    let fl = &a.frame_links;
    let _ = writeln!(s, "\nframe links:");
    for st in &fl.current_frame_stores {
        let line = st
            .line
            .as_ref()
            .map(|l| format!("{}:{}", l.file, l.line))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  current-frame store {:#x} ({} bytes) {} <- {} {}",
            st.address,
            st.len,
            st.destination,
            st.value.name(),
            line
        );
    }
    for f in &fl.functions {
        let _ = writeln!(
            s,
            "  function {:?} {} at {:#x} ({} bytes)",
            f.role, f.name, f.address, f.size
        );
    }
    for l in &fl.labels {
        let _ = writeln!(s, "  label {:?} {} at {:#x}", l.role, l.name, l.address);
    }
    let _ = writeln!(s, "\nhook points: {}", a.hooks.len());
    for h in &a.hooks {
        let _ = writeln!(
            s,
            "  {:?} {} at {:#x}: {} bytes displaced",
            h.kind,
            h.what,
            h.point.address,
            h.point.bytes.len()
        );
    }
    let _ = writeln!(s, "\nstruct offsets:");
    for (name, layout) in &a.offsets.structs {
        let fields: Vec<String> = layout
            .fields
            .iter()
            .map(|(f, o)| format!("{f}={o:#x}"))
            .collect();
        let _ = writeln!(
            s,
            "  {name} (size {:#x}): {}",
            layout.size,
            fields.join(" ")
        );
    }
    s
}
