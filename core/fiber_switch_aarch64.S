/* The fiber switch for AArch64 (AAPCS64): saves the callee-saved registers
 * x19-x29, the link register x30 and d8-d15 with the stack pointer of the
 * running context, loads the other's. No syscall, no signal mask. Mirrors
 * fiber_switch_x86_64.S; fiber.c lays out the first frame to match. */
    .text
    .p2align 4
    .globl  sp_fiber_swap
    .hidden sp_fiber_swap
    .type   sp_fiber_swap, %function
/* void sp_fiber_swap(void **save_sp, void *new_sp)
 * Frame, from sp up: x19 x20 ... x29 x30, then d8 ... d15 (160 bytes). */
sp_fiber_swap:
    .cfi_startproc
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .cfi_endproc
    .size   sp_fiber_swap, .-sp_fiber_swap

    .p2align 2
    .globl  sp_fiber_trampoline
    .hidden sp_fiber_trampoline
    .type   sp_fiber_trampoline, %function
/* First code a new fiber runs, reached by sp_fiber_swap's ret: x19 holds the
 * entry function, x20 its argument (both placed by sp_fiber_create), x29 is
 * zero so frame-pointer walks stop here. The entry never returns. */
sp_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x30, xzr
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   sp_fiber_trampoline, .-sp_fiber_trampoline

    .section .note.GNU-stack,"",%progbits
