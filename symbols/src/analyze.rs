//! The orchestration: file → [`Analysis`].
//!
//! Runs the ELF checks, reads the version, picks the version profile, then
//! derives the DWARF facts, the opcode table, the opcode arrays, the function
//! sites and finally the machine-code facts. For a version the rewriter can
//! instrument every failure is an [`AnalysisError`]; for an analyse-only
//! version each failing part becomes a sentence in [`Analysis::unsupported`],
//! so `inspect` still shows everything else.

mod meta;
mod sites;
mod table;

use crate::code::{analyze_code, CodeImage, CodeInputs};
use crate::dwarf::function::{find_function, labels as function_labels};
use crate::dwarf::lines::LineTable;
use crate::dwarf::structs::struct_layouts;
use crate::dwarf::units::unit_containing;
use crate::dwarf::{dwarf_error, DwarfData};
use crate::elf::{detect_version, library_info, ElfInput};
use crate::error::AnalysisError;
use crate::model::{Analysis, EvalFunction, FrameLinks, LabelSite};
use crate::versions::{self, Support};
use std::path::Path;

/// Analyses the library at `path` (memory-mapped, read-only).
pub fn analyze_file(path: &Path) -> Result<Analysis, AnalysisError> {
    analyze_file_with(path, AnalyzeOptions::default())
}

/// [`analyze_file`] with explicit options.
pub fn analyze_file_with(path: &Path, options: AnalyzeOptions) -> Result<Analysis, AnalysisError> {
    let name = path.display().to_string();
    let io = |source| AnalysisError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(AnalysisError::NotElf(name));
    }
    // SAFETY: the mapping is read-only and lives until this function returns;
    // the input is an installed library that nothing is expected to modify
    // while we read it (a concurrent truncation would be a user error that
    // could fault, as with any mmap-based reader such as objdump).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    analyze_bytes_with(&name, &map, options)
}

/// Collects failures: errors for instrumentable versions, sentences otherwise.
struct Outcome {
    path: String,
    strict: bool,
    unsupported: Vec<String>,
}

impl Outcome {
    /// `Ok(Some)` on success; on failure an error (strict) or a recorded sentence.
    fn keep<T>(&mut self, result: Result<T, String>) -> Result<Option<T>, AnalysisError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(sentence) if self.strict => {
                Err(AnalysisError::Analysis(self.path.clone(), sentence))
            }
            Err(sentence) => {
                self.unsupported.push(sentence);
                Ok(None)
            }
        }
    }
}

/// Which parts of the analysis to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// Run the machine-code analysis. Without it the result has no register
    /// layout, dispatch sites or hooks, records why in `unsupported`, and is
    /// therefore never instrumentable; ELF and DWARF facts are complete.
    pub machine_code: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { machine_code: true }
    }
}

/// Analyses an in-memory copy of a library; `path` is used in messages only.
pub fn analyze_bytes(path: &str, data: &[u8]) -> Result<Analysis, AnalysisError> {
    analyze_bytes_with(path, data, AnalyzeOptions::default())
}

/// [`analyze_bytes`] with explicit options.
pub fn analyze_bytes_with(
    path: &str,
    data: &[u8],
    options: AnalyzeOptions,
) -> Result<Analysis, AnalysisError> {
    let elf = ElfInput::parse(path, data)?;
    let (version, _) = detect_version(&elf)?;
    let profile = versions::profile(version).ok_or_else(|| AnalysisError::UnsupportedVersion {
        path: path.to_string(),
        version: version.to_string(),
        supported: versions::known_series(),
    })?;
    let dwarf_data = DwarfData::load(&elf)?;
    let dwarf = dwarf_data.dwarf();
    let derr = |e| dwarf_error(path, e);
    let mut outcome = Outcome {
        path: path.to_string(),
        strict: profile.support == Support::Instrument,
        unsupported: Vec::new(),
    };

    // The eval function: symbol, unit, DWARF ranges (which must cover the .cold part).
    let eval_name = profile.eval_function;
    let eval_symbol = elf
        .symbols()
        .get(eval_name)
        .ok_or_else(|| {
            AnalysisError::NotLibpython(path.to_string(), format!("{eval_name} symbol"))
        })?
        .clone();
    let analysis_error = |msg: String| AnalysisError::Analysis(path.to_string(), msg);
    let unit = unit_containing(&dwarf, eval_symbol.address)
        .map_err(derr)?
        .ok_or_else(|| {
            analysis_error(format!(
                "no DWARF compilation unit covers {eval_name} at {:#x}",
                eval_symbol.address
            ))
        })?;
    let function = find_function(&dwarf, &unit, eval_name, eval_symbol.address)
        .map_err(derr)?
        .ok_or_else(|| analysis_error(format!("no DWARF subprogram for {eval_name}")))?;
    let eval = EvalFunction {
        symbol: eval_name.to_string(),
        ranges: function.ranges.clone(),
    };
    if let Some(cold) = elf.symbols().cold_part(eval_name) {
        let covered = eval.contains(cold.address)
            && (cold.size == 0 || eval.contains(cold.address + cold.size - 1));
        if !covered {
            outcome.keep::<()>(Err(format!(
                "the DWARF ranges of {eval_name} do not cover {}.cold at {:#x}",
                eval_name, cold.address
            )))?;
        }
    }
    let dwarf_labels = function_labels(&dwarf, &unit, &function).map_err(derr)?;

    let table = outcome.keep(table::build(
        &elf,
        &dwarf,
        &unit,
        &function,
        profile,
        &dwarf_labels,
    ))?;
    let opcode_meta = outcome.keep(meta::read(&elf, profile))?;
    let mut functions = Vec::new();
    for site in sites::functions(&elf, profile) {
        functions.extend(outcome.keep(site)?);
    }
    let mut labels: Vec<LabelSite> = Vec::new();
    for site in sites::control_labels(&dwarf_labels, profile) {
        labels.extend(outcome.keep(site)?.flatten());
    }
    let structs = struct_layouts(&dwarf, &unit, profile.struct_fields).map_err(derr)?;
    for problem in structs.problems {
        outcome.keep::<()>(Err(problem))?;
    }
    let offsets = structs.offsets;

    let lines = LineTable::new(dwarf_data.dwarf()).map_err(derr)?;
    let line_at = |addr: u64| lines.line_at(addr);
    let mut frame_links = FrameLinks {
        current_frame_stores: Vec::new(),
        functions,
        labels,
    };
    let mut dispatch_sites = Vec::new();
    let mut registers = None;
    let mut hooks = Vec::new();
    let mut detours = Vec::new();
    match &table {
        _ if !options.machine_code => outcome
            .unsupported
            .push("machine-code analysis not run (disabled by the caller)".into()),
        Some(table) => {
            let image = CodeImage::from_elf(elf.file());
            let inputs = CodeInputs {
                image: &image,
                profile,
                eval: &eval,
                table,
                labels: &frame_links.labels,
                functions: &frame_links.functions,
                offsets: &offsets,
                line_at: &line_at,
            };
            let facts = analyze_code(&inputs).map_err(|e| format!("machine-code analysis: {e}"));
            if let Some(facts) = outcome.keep(facts)? {
                for failure in &facts.hook_failures {
                    outcome.keep::<()>(Err(format!("hook placement: {failure}")))?;
                }
                dispatch_sites = facts.dispatch_sites;
                registers = Some(facts.registers);
                frame_links.current_frame_stores = facts.current_frame_stores;
                frame_links.labels.extend(facts.extra_labels);
                hooks = facts.hooks;
            }
            let sites = crate::code::detours::detour_sites(
                &image,
                profile,
                &frame_links.functions,
                &offsets,
            )
            .map_err(|e| format!("function detours: {e}"));
            detours = outcome.keep(sites)?.unwrap_or_default();
        }
        None => outcome
            .unsupported
            .push("machine-code analysis skipped: the opcode table could not be built".into()),
    }

    let mut unsupported = outcome.unsupported;
    if let Support::AnalyseOnly(reason) = profile.support {
        unsupported.insert(0, reason.to_string());
    }
    Ok(Analysis {
        library: library_info(&elf),
        version,
        eval,
        table,
        opcode_meta,
        dispatch_sites,
        registers,
        frame_links,
        hooks,
        detours,
        offsets,
        unsupported,
    })
}
