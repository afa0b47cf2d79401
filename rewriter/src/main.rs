//! Command-line entry point of the rewriter.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use rewriter::instrument::{instrument, verify_dir, InstrumentOptions};

/// Static binary rewriter for CPython: instruments an unmodified libpython with
/// native execution probes (the `_retrace` and `retrace` modules).
#[derive(Parser)]
#[command(name = "rewriter", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print everything the rewriter derives from a libpython; writes nothing.
    Inspect {
        /// The libpython shared library (e.g. $(pyenv root)/versions/3.12.1/lib/libpython3.12.so.1.0).
        library: PathBuf,
        /// Print the analysis as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an instrumented copy of a libpython, its runtime and a launcher into DIR.
    Instrument {
        /// The libpython shared library to instrument.
        library: PathBuf,
        /// Output folder (gets lib/, bin/python3.X and retrace-manifest.json).
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing output folder.
        #[arg(long)]
        force: bool,
        /// Runtime library to ship (default: libretrace_rt.so next to this executable).
        #[arg(long, value_name = "PATH")]
        runtime: Option<PathBuf>,
        /// Original interpreter executable (default: PREFIX/bin/python3.X next to the library).
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// Print only errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Re-check an output folder against its manifest (and the original library, if present).
    Verify {
        /// An output folder written by `rewriter instrument`.
        dir: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { library, json } => {
            let analysis = symbols::analyze::analyze_file(&library)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&analysis)?);
            } else {
                print!("{}", rewriter::report::render(&analysis));
            }
        }
        Command::Instrument {
            library,
            out,
            force,
            runtime,
            python,
            quiet,
        } => {
            let opts = InstrumentOptions {
                input: library,
                out_dir: out,
                force,
                runtime,
                python,
            };
            let mut progress = |line: &str| {
                if !quiet {
                    eprintln!("rewriter: {line}");
                }
            };
            let report = instrument(&opts, &mut progress)?;
            if !quiet {
                let timing: Vec<String> = report
                    .timings
                    .iter()
                    .map(|(n, d)| format!("{n} {:.0} ms", d.as_secs_f64() * 1000.0))
                    .collect();
                eprintln!(
                    "rewriter: verified {} stubs, {} hooks and {} detours ({} .text bytes compared with the original)",
                    report.verify.stubs_checked,
                    report.verify.hooks_checked,
                    report.verify.detours_checked,
                    report.verify.text_bytes_compared
                );
                eprintln!("rewriter: {}", timing.join(", "));
                println!("{}", report.launcher.display());
            }
        }
        Command::Verify { dir } => {
            let (report, manifest) = verify_dir(&dir)?;
            println!(
                "{}: OK — CPython {}, {} stubs, {} hooks and {} detours verified{}",
                dir.display(),
                manifest.input.version,
                report.stubs_checked,
                report.hooks_checked,
                report.detours_checked,
                if report.compared_with_original {
                    format!(", compared with the original {}", manifest.input.path)
                } else {
                    " (original library not available: compared with the manifest only)".into()
                }
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rewriter: error: {e}");
            ExitCode::from(1)
        }
    }
}
