//! Typed errors of the ELF emission module: every way reading, editing, laying out or
//! serialising the rewritten libpython can fail, each with a precise one-line message.

/// Failure of an [`super::ElfRewrite`] operation.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// `object`'s builder could not parse the input file.
    #[error("cannot parse input ELF: {0}")]
    Parse(object::build::Error),
    /// The input is an ELF file, but not one this rewriter handles.
    #[error("input is not an ELF64 x86-64 shared object (e_type {e_type:#x}, e_machine {e_machine:#x}, 64-bit {is_64})")]
    UnsupportedInput {
        /// `e_type` of the input.
        e_type: u16,
        /// `e_machine` of the input.
        e_machine: u16,
        /// Whether the input is ELFCLASS64.
        is_64: bool,
    },
    /// The input has no `.dynamic` section, so no dynamic entry can be edited.
    #[error("input has no .dynamic section")]
    NoDynamicSection,
    /// A string for a dynamic entry or a section name is unusable.
    #[error("invalid {what} {value:?}: must be non-empty and contain no NUL byte")]
    InvalidString {
        /// What the string was meant to be (e.g. "DT_NEEDED soname").
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// `place_new_sections` was called a second time.
    #[error("place_new_sections was already called; new sections can be placed only once")]
    AlreadyPlaced,
    /// `set_text`/`set_data` was called before `place_new_sections`.
    #[error("{0} called before place_new_sections")]
    NotPlaced(&'static str),
    /// The requested data section has size zero.
    #[error("data section size must be non-zero")]
    EmptyData,
    /// A new section would reuse the name of an existing section (or the two new names are equal).
    #[error("section name {0:?} is already in use")]
    SectionNameTaken(String),
    /// The data passed to `set_data` does not match the size given to `place_new_sections`.
    #[error("data section is {expected:#x} bytes but set_data got {got:#x}")]
    DataSizeMismatch {
        /// Size given to `place_new_sections`.
        expected: u64,
        /// Length of the bytes passed to `set_data`.
        got: u64,
    },
    /// `finish` was called after `place_new_sections` but without `set_text`.
    #[error("text section was placed but set_text was never called")]
    TextNotSet,
    /// `set_text` was given no bytes.
    #[error("text section must not be empty")]
    EmptyText,
    /// An address computation overflowed 64 bits.
    #[error("address computation overflowed while {0}")]
    AddressOverflow(&'static str),
    /// No `R_X86_64_RELATIVE` relocation has the requested `r_offset`.
    #[error("no R_X86_64_RELATIVE relocation with r_offset {slot:#x}")]
    RelocationNotFound {
        /// The requested `r_offset`.
        slot: u64,
    },
    /// An addend does not fit the signed 64-bit `r_addend` field.
    #[error("addend {addend:#x} for slot {slot:#x} does not fit in a signed 64-bit r_addend")]
    AddendTooLarge {
        /// Relocation `r_offset`.
        slot: u64,
        /// Requested addend.
        addend: u64,
    },
    /// An existing relocation has a negative addend, which is not an address.
    #[error("relocation at {slot:#x} has negative addend {addend}")]
    NegativeAddend {
        /// Relocation `r_offset`.
        slot: u64,
        /// The addend found.
        addend: i64,
    },
    /// After layout, a redirected addend does not point into any loaded segment.
    #[error(
        "redirected addend {addend:#x} for slot {slot:#x} is outside every PT_LOAD of the output"
    )]
    AddendOutsideImage {
        /// Relocation `r_offset`.
        slot: u64,
        /// The addend set by `redirect_relative`.
        addend: u64,
    },
    /// `patch` was given an empty byte string.
    #[error("patch at {vaddr:#x} has no bytes")]
    EmptyPatch {
        /// Requested address.
        vaddr: u64,
    },
    /// `patch` range is not wholly inside one existing allocated PROGBITS section.
    #[error("patch [{vaddr:#x}, +{len:#x}) is not inside one existing allocated PROGBITS section")]
    PatchOutsideSection {
        /// Requested address.
        vaddr: u64,
        /// Number of bytes.
        len: u64,
    },
    /// Two sections that cannot be moved overlap after the requested growth.
    #[error("immovable {first} (ends {end:#x}) overlaps immovable {second} (starts {start:#x})")]
    ImmovableOverlap {
        /// Name of the earlier block.
        first: String,
        /// Its end address.
        end: u64,
        /// Name of the later block.
        second: String,
        /// Its start address.
        start: u64,
    },
    /// The final layout breaks an invariant the loader or the runtime relies on.
    #[error("layout invariant violated: {0}")]
    Layout(String),
    /// `object`'s builder failed to serialise the result.
    #[error("cannot serialise output ELF: {0}")]
    Write(object::build::Error),
}
