//! `componentize <core.wasm> <out.wasm>`: turns a core module built with
//! `wit-bindgen` (which embeds its WIT world in a custom section) into a
//! validated component, as `wasm-tools component new` would.
//!
//! The output depends on the input bytes and this tool's locked
//! `wit-component` version only, so a rebuild gives the same bytes.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use wit_component::ComponentEncoder;

/// Errors end the tool with their message; nothing here is recoverable.
type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [core, out] = args.as_slice() else {
        eprintln!("usage: componentize <core.wasm> <out.wasm>");
        return ExitCode::from(2);
    };
    match componentize(core, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("componentize {}: {message}", core.display());
            ExitCode::FAILURE
        }
    }
}

/// Encodes `core` as a component and writes it to `out`.
fn componentize(core: &PathBuf, out: &PathBuf) -> Result<(), BoxError> {
    let module = std::fs::read(core)?;
    let component = ComponentEncoder::default().module(&module)?.validate(true).encode()?;
    std::fs::write(out, component)?;
    Ok(())
}
