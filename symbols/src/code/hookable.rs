//! Whether a 5-byte `jmp rel32` can replace the whole instructions at an address.
//!
//! Rules: ≥ 5 bytes of whole, contiguous instructions starting at the address;
//! none of them transfers control (branch, call, ret, int); no direct-branch
//! or table target strictly inside the displaced bytes (the first byte may be
//! one). RIP-relative memory operands are allowed: the emitter re-encodes them.

use super::decode::Listing;
use super::image::CodeImage;
use crate::model::HookPoint;
use iced_x86::FlowControl;
use thiserror::Error;

/// Size of the `jmp rel32` that replaces the displaced instructions.
pub const JMP_LEN: usize = 5;

/// Why no hook can be placed at an address.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HookRefusal {
    #[error("{0:#x} is not the start of a decoded instruction")]
    NotBoundary(u64),
    #[error("displaced instruction at {0:#x} transfers control")]
    ControlFlow(u64),
    #[error("jump target {0:#x} lies inside the displaced bytes")]
    TargetInside(u64),
    #[error("only {0} bytes of whole instructions before the end of the code")]
    TooShort(usize),
}

/// The hook point at `addr`, given a predicate for jump targets.
pub fn hook_point(
    image: &CodeImage<'_>,
    listing: &Listing,
    is_target: &dyn Fn(u64) -> bool,
    addr: u64,
) -> Result<HookPoint, HookRefusal> {
    let first = listing
        .index_of(addr)
        .ok_or(HookRefusal::NotBoundary(addr))?;
    let mut len = 0usize;
    let mut i = first;
    loop {
        let ins = &listing.insns[i];
        if i > first && is_target(ins.ip()) {
            return Err(HookRefusal::TargetInside(ins.ip()));
        }
        if !matches!(ins.flow_control(), FlowControl::Next) {
            return Err(HookRefusal::ControlFlow(ins.ip()));
        }
        len += ins.len();
        if len >= JMP_LEN {
            break;
        }
        if !listing.falls_into_next(i) {
            return Err(HookRefusal::TooShort(len));
        }
        i += 1;
    }
    let bytes = image
        .bytes(addr, addr + len as u64)
        .ok_or(HookRefusal::NotBoundary(addr))?;
    Ok(HookPoint {
        flags_live: true,
        address: addr,
        bytes: bytes.to_vec(),
    })
}

/// Whether any displaced instruction uses a RIP-relative operand.
pub fn has_rip_relative(listing: &Listing, point: &HookPoint) -> bool {
    listing
        .insns
        .iter()
        .filter(|i| i.ip() >= point.address && i.ip() < point.end())
        .any(|i| i.is_ip_rel_memory_operand())
}
