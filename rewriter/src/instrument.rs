//! `rewriter instrument`: analyse, plan, generate, emit, verify, publish.
//!
//! Nothing is written to the output folder until the rewritten library has
//! been verified: everything is assembled in a fresh staging folder next to
//! the destination, which then replaces the destination by `rename`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::descriptor;
use crate::emit::ElfRewrite;
use crate::error::RewriteError;
use crate::launcher;
use crate::manifest::{
    hex, DetourRecord, HookRecord, InputRecord, Manifest, StubRecord, FILE_NAME,
};
use crate::plan::plan;
use crate::verify::{verify, VerifyReport};
use trampolines::detour::{generate_detours, site_patch, DetourProgram, DetourRequest};
use trampolines::{generate, HookRequest, ProgramInput, StubRequest};

pub struct InstrumentOptions {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub force: bool,
    pub runtime: Option<PathBuf>,
    pub python: Option<PathBuf>,
}

/// What was done, with timings.
pub struct InstrumentReport {
    pub version: String,
    pub library: PathBuf,
    pub launcher: PathBuf,
    pub stubs: usize,
    pub hooks: usize,
    pub detours: usize,
    pub verify: VerifyReport,
    pub timings: Vec<(&'static str, Duration)>,
}

/// The original interpreter next to a libpython: `PREFIX/lib/libpython3.X.so.1.0` → `PREFIX/bin/python3.X`.
pub fn default_python(input: &Path, series: (u8, u8)) -> PathBuf {
    let prefix = input
        .canonicalize()
        .unwrap_or_else(|_| input.to_path_buf())
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    prefix
        .join("bin")
        .join(format!("python{}.{}", series.0, series.1))
}

/// The runtime library shipped next to this executable (cargo puts both in `target/<profile>`).
pub fn default_runtime() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(retrace_abi::RUNTIME_SONAME)))
        .unwrap_or_else(|| PathBuf::from(retrace_abi::RUNTIME_SONAME))
}

/// Run the whole pipeline. `progress` receives one line per stage.
pub fn instrument(
    opts: &InstrumentOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<InstrumentReport, RewriteError> {
    let mut timings = Vec::new();
    let t0 = Instant::now();
    check_destination(&opts.out_dir, opts.force)?;

    let input_path = opts.input.display().to_string();
    let input = std::fs::read(&opts.input).map_err(|e| {
        RewriteError::Analysis(symbols::AnalysisError::Io {
            path: input_path.clone(),
            source: e,
        })
    })?;
    progress(&format!("analysing {input_path}"));
    let analysis = symbols::analyze::analyze_bytes(&input_path, &input)?;
    timings.push(("analyse", t0.elapsed()));
    if !analysis.is_instrumentable() {
        return Err(RewriteError::NotInstrumentable {
            path: input_path,
            version: analysis.version.to_string(),
            reason: if analysis.unsupported.is_empty() {
                "incomplete analysis".into()
            } else {
                analysis.unsupported.join("; ")
            },
        });
    }
    let series = analysis.version.series();
    let python = opts
        .python
        .clone()
        .unwrap_or_else(|| default_python(&opts.input, series));
    if !python.is_file() {
        return Err(RewriteError::PythonMissing(python.display().to_string()));
    }
    let runtime = opts.runtime.clone().unwrap_or_else(default_runtime);
    if !runtime.is_file() {
        return Err(RewriteError::RuntimeMissing(runtime.display().to_string()));
    }

    let t = Instant::now();
    let plan = plan(&analysis).map_err(|e| RewriteError::Verify(e.to_string()))?;
    progress(&format!(
        "CPython {}: {} opcode stubs, {} hooks, {} function detours",
        analysis.version,
        plan.stubs.len(),
        plan.hooks.len(),
        plan.detours.len()
    ));
    let mut elf = ElfRewrite::read(&input)?;
    elf.add_needed(retrace_abi::RUNTIME_SONAME)?;
    elf.set_runpath("$ORIGIN")?;
    let data_size = std::mem::size_of::<retrace_abi::Descriptor>() as u64;
    let placement = elf.place_new_sections(
        retrace_abi::DATA_SECTION,
        data_size,
        retrace_abi::TEXT_SECTION,
    )?;
    let stub_requests: Vec<StubRequest> = plan
        .stubs
        .iter()
        .map(|s| StubRequest {
            opcode: s.opcode,
            handler: s.handler,
            width: s.width,
            classify_next: s.classify_next,
            entry_exit: s.entry_exit,
        })
        .collect();
    let hook_requests: Vec<HookRequest> = plan
        .hooks
        .iter()
        .map(|h| HookRequest {
            address: h.site.point.address,
            displaced: h.site.point.bytes.clone(),
            enable_bit: h.kind as u32,
            flags_live: h.flags_live,
            fast: h.fast,
        })
        .collect();
    let flags_live = analysis.registers.as_ref().is_some_and(|r| r.flags_live);
    let program = generate(&ProgramInput {
        text_vaddr: placement.text_vaddr,
        descriptor_vaddr: placement.data_vaddr,
        stubs: &stub_requests,
        registers: plan.dispatch,
        hooks: &hook_requests,
        flags_live_at_handlers: flags_live,
    })?;
    // The detours follow the stubs and hooks in the same text section.
    let detour_base = placement.text_vaddr + (program.bytes.len() as u64).next_multiple_of(16);
    let detour_requests: Vec<DetourRequest> = plan
        .detours
        .iter()
        .map(|d| DetourRequest {
            site: d.site.point.address,
            displaced: d.site.point.bytes.clone(),
            full_replacement: d.site.full_replacement,
        })
        .collect();
    let detours = generate_detours(
        detour_base,
        placement.data_vaddr + retrace_abi::field::DETOUR_TARGETS as u64,
        &detour_requests,
    )?;
    let mut desc = descriptor::build(&analysis, &plan, placement.data_vaddr);
    let originals: Vec<u64> = detours.detours.iter().map(|d| d.original).collect();
    descriptor::set_detour_originals(&mut desc, &originals);
    elf.set_data(desc.as_bytes().to_vec())?;
    elf.set_text(text_with_detours(&program.bytes, &detours))?;
    for stub in &program.stubs {
        let planned = plan
            .stubs
            .iter()
            .find(|s| s.opcode == stub.opcode)
            .ok_or_else(|| RewriteError::Verify(format!("stub {} not planned", stub.opcode)))?;
        let old = elf.redirect_relative(planned.slot, stub.address)?;
        if old != planned.handler {
            return Err(RewriteError::Verify(format!(
                "slot {:#x} held {old:#x}, the analysis saw {:#x}",
                planned.slot, planned.handler
            )));
        }
    }
    for (tramp, planned) in program.hooks.iter().zip(&plan.hooks) {
        let len = planned.site.point.bytes.len();
        let rel = tramp.address as i64 - (tramp.site as i64 + 5);
        let rel = i32::try_from(rel).map_err(|_| {
            RewriteError::Verify(format!("hook {:#x} out of jump range", tramp.site))
        })?;
        let mut patch = vec![0xe9];
        patch.extend_from_slice(&rel.to_le_bytes());
        patch.resize(len, 0xcc);
        let old = elf.patch(tramp.site, &patch)?;
        if old != planned.site.point.bytes {
            return Err(RewriteError::Verify(format!(
                "bytes at hook {:#x} are not the ones the analysis saw",
                tramp.site
            )));
        }
    }
    for (d, planned) in detours.detours.iter().zip(&plan.detours) {
        let patch = site_patch(d.site, d.address, d.site_len).ok_or_else(|| {
            RewriteError::Verify(format!("detour {:#x} out of jump range", d.site))
        })?;
        let old = elf.patch(d.site, &patch)?;
        if old != planned.site.point.bytes {
            return Err(RewriteError::Verify(format!(
                "bytes at detour {:#x} ({}) are not the ones the analysis saw",
                d.site, planned.site.function
            )));
        }
    }
    let output = elf.finish()?;
    timings.push(("rewrite", t.elapsed()));

    let soname = analysis
        .library
        .soname
        .clone()
        .unwrap_or_else(|| format!("libpython{}.{}.so.1.0", series.0, series.1));
    let launcher_name = format!("python{}.{}", series.0, series.1);
    let manifest = Manifest {
        tool: "rewriter".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        input: InputRecord {
            path: opts
                .input
                .canonicalize()
                .unwrap_or_else(|_| opts.input.clone())
                .display()
                .to_string(),
            sha256: analysis.library.sha256.clone(),
            size: input.len() as u64,
            version: analysis.version.to_string(),
        },
        library: soname.clone(),
        output_sha256: hex(&Sha256::digest(&output)),
        runtime: retrace_abi::RUNTIME_SONAME.into(),
        launcher: format!("bin/{launcher_name}"),
        python: python.display().to_string(),
        text_vaddr: placement.text_vaddr,
        data_vaddr: placement.data_vaddr,
        dispatch_common: program.dispatch_common,
        raise: program
            .raise_block
            .map(|(block, entry)| crate::manifest::RaiseRecord { block, entry }),
        stubs: program
            .stubs
            .iter()
            .zip(&plan.stubs)
            .map(|(s, p)| StubRecord {
                opcode: s.opcode,
                name: p.name.clone(),
                slot: p.slot,
                stub: s.address,
                handler: s.handler,
            })
            .collect(),
        hooks: program
            .hooks
            .iter()
            .zip(&plan.hooks)
            .map(|(t, p)| HookRecord {
                kind: format!("{:?}", p.kind),
                what: p.site.what.clone(),
                site: t.site,
                original: hex(&p.site.point.bytes),
                trampoline: t.address,
                displaced_address: t.displaced_address,
                displaced_len: t.displaced_len,
            })
            .collect(),
        detours: detours
            .detours
            .iter()
            .zip(&plan.detours)
            .map(|(d, p)| DetourRecord {
                kind: format!("{:?}", p.kind),
                function: p.site.function.clone(),
                site: d.site,
                original: hex(&p.site.point.bytes),
                detour: d.address,
                target_slot: d.target_slot,
                moved_address: d.original,
                moved_len: d.original_len,
                full_replacement: d.full_replacement,
            })
            .collect(),
    };

    let t = Instant::now();
    progress("verifying the rewritten library");
    let report = verify(&output, &manifest, Some(&input)).map_err(RewriteError::Verify)?;
    timings.push(("verify", t.elapsed()));

    let t = Instant::now();
    progress(&format!("writing {}", opts.out_dir.display()));
    publish(
        opts,
        &manifest,
        &output,
        &runtime,
        &python,
        &launcher_name,
        &analysis,
    )?;
    timings.push(("write", t.elapsed()));
    timings.push(("total", t0.elapsed()));
    Ok(InstrumentReport {
        version: analysis.version.to_string(),
        library: opts.out_dir.join("lib").join(&soname),
        launcher: opts.out_dir.join("bin").join(&launcher_name),
        stubs: manifest.stubs.len(),
        hooks: manifest.hooks.len(),
        detours: manifest.detours.len(),
        verify: report,
        timings,
    })
}

/// The text section: stubs and hooks, `int3` up to the detours' 16-byte aligned base, detours.
fn text_with_detours(program: &[u8], detours: &DetourProgram) -> Vec<u8> {
    let mut text = program.to_vec();
    if !detours.bytes.is_empty() {
        text.resize(program.len().next_multiple_of(16), 0xcc);
        text.extend_from_slice(&detours.bytes);
    }
    text
}

/// Refuse to replace an existing output without `--force`; refuse a path that is a file.
fn check_destination(dir: &Path, force: bool) -> Result<(), RewriteError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(RewriteError::output(dir, "exists and is not a directory"));
        }
        let non_empty = std::fs::read_dir(dir)
            .map_err(|e| RewriteError::output(dir, e))?
            .next()
            .is_some();
        if non_empty && !force {
            return Err(RewriteError::Exists(dir.display().to_string()));
        }
        if non_empty && !dir.join(FILE_NAME).is_file() {
            return Err(RewriteError::output(
                dir,
                "is not empty and is not a rewriter output; refusing to replace it even with --force",
            ));
        }
    }
    Ok(())
}

fn publish(
    opts: &InstrumentOptions,
    manifest: &Manifest,
    output: &[u8],
    runtime: &Path,
    python: &Path,
    launcher_name: &str,
    analysis: &symbols::Analysis,
) -> Result<(), RewriteError> {
    let dest = &opts.out_dir;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| RewriteError::output(&parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".rewriter-staging-")
        .tempdir_in(&parent)
        .map_err(|e| {
            RewriteError::output(&parent, format!("cannot create a staging folder: {e}"))
        })?;
    let root = staging.path();
    let lib = root.join("lib");
    let bin = root.join("bin");
    std::fs::create_dir_all(&lib).map_err(|e| RewriteError::output(&lib, e))?;
    std::fs::create_dir_all(&bin).map_err(|e| RewriteError::output(&bin, e))?;
    let lib_path = lib.join(&manifest.library);
    write_file(&lib_path, output, 0o755)?;
    let rt = std::fs::read(runtime).map_err(|e| RewriteError::output(runtime, e))?;
    write_file(&lib.join(retrace_abi::RUNTIME_SONAME), &rt, 0o755)?;
    let script = launcher::script(python, &analysis.version.to_string());
    write_file(&bin.join(launcher_name), script.as_bytes(), 0o755)?;
    for alias in [
        format!("python{}", analysis.version.major),
        "python".to_string(),
    ] {
        std::os::unix::fs::symlink(launcher_name, bin.join(alias))
            .map_err(|e| RewriteError::output(&bin, e))?;
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| RewriteError::output(root, e))?;
    write_file(&root.join(FILE_NAME), &json, 0o644)?;

    // Publish: move any previous output aside, rename staging into place, drop the old one.
    let staged = staging.keep();
    let old = if dest.exists() {
        let aside = parent.join(format!(
            ".rewriter-old-{}-{}",
            std::process::id(),
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("out")
        ));
        std::fs::rename(dest, &aside).map_err(|e| RewriteError::output(dest, e))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&staged, dest) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside, dest);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(RewriteError::output(dest, e));
    }
    if let Some(aside) = old {
        let _ = std::fs::remove_dir_all(aside);
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RewriteError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).map_err(|e| RewriteError::output(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| RewriteError::output(path, e))
}

/// `rewriter verify DIR`: re-check an output folder.
pub fn verify_dir(dir: &Path) -> Result<(VerifyReport, Manifest), RewriteError> {
    let manifest = Manifest::load(dir)?;
    let lib = dir.join("lib").join(&manifest.library);
    let output = std::fs::read(&lib).map_err(|e| RewriteError::output(&lib, e))?;
    let digest = hex(&Sha256::digest(&output));
    if digest != manifest.output_sha256 {
        return Err(RewriteError::Verify(format!(
            "{} changed since it was written (sha256 {digest}, manifest {})",
            lib.display(),
            manifest.output_sha256
        )));
    }
    let rt = dir.join("lib").join(&manifest.runtime);
    if !rt.is_file() {
        return Err(RewriteError::Verify(format!("{} is missing", rt.display())));
    }
    let original = std::fs::read(&manifest.input.path)
        .ok()
        .filter(|o| hex(&Sha256::digest(o)) == manifest.input.sha256);
    let report = verify(&output, &manifest, original.as_deref()).map_err(RewriteError::Verify)?;
    Ok((report, manifest))
}
