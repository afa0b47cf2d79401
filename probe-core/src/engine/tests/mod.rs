//! Unit tests of the coordinate engine over a fake interpreter stack.

mod checklist;
mod jumps;
mod lifecycle;
mod proptests;
mod sim;
