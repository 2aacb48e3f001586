//! Peak stack measurement by painting: fill the free RAM between the end of `.bss`/`.uninit`
//! (`_stack_end`, from cortex-m-rt's `link.x`) and the current stack pointer with a pattern,
//! run, then find the lowest word that was overwritten.
#![allow(unsafe_code)]

const PAINT: u32 = 0xC0DE_5AFE;
/// Words left untouched just below the stack pointer at painting time (the painting code's
/// own spills and calls live above this margin).
const MARGIN_WORDS: usize = 16;

extern "C" {
    static mut _stack_end: u32;
    static mut _stack_start: u32;
}

fn bounds() -> (*mut u32, *mut u32) {
    // Only the addresses of the linker symbols are taken, never their values.
    (core::ptr::addr_of_mut!(_stack_end), core::ptr::addr_of_mut!(_stack_start))
}

fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads SP into a register; no memory access, no side effect.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Paints the unused stack. Call once, early in `main`.
#[inline(never)]
pub fn paint() {
    let (end, _) = bounds();
    let limit = (stack_pointer() & !3) - MARGIN_WORDS * 4;
    let mut p = end;
    while (p as usize) < limit {
        // SAFETY: [_stack_end, sp - margin) is RAM that nothing uses yet: below the live stack
        // and above all statics. Volatile so the stores are not elided.
        unsafe {
            p.write_volatile(PAINT);
            p = p.add(1);
        }
    }
}

/// Bytes of stack used since [`paint`], at most (the deepest overwritten word).
pub fn peak_used() -> usize {
    let (end, start) = bounds();
    let mut p = end;
    // SAFETY: reads of RAM between the statics and the stack top, all initialized by `paint`
    // or by the stack itself.
    while p < start && unsafe { p.read_volatile() } == PAINT {
        p = unsafe { p.add(1) };
    }
    start as usize - p as usize
}

/// RAM from the end of the statics to the top of the stack (what the stack may grow into).
pub fn stack_capacity() -> usize {
    let (end, start) = bounds();
    start as usize - end as usize
}
