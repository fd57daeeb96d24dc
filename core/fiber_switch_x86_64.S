/* The fiber switch for x86-64 System V: saves the callee-saved registers and
 * the stack pointer of the running context, loads the other's. No syscall, no
 * signal mask: a few instructions. MXCSR and the x87 control word are left
 * alone: they are thread-wide settings, not per-task state. */
    .text
    .p2align 4
    .globl  sp_fiber_swap
    .hidden sp_fiber_swap
    .type   sp_fiber_swap, @function
/* void sp_fiber_swap(void **save_sp, void *new_sp) */
sp_fiber_swap:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   sp_fiber_swap, .-sp_fiber_swap

    .globl  sp_fiber_trampoline
    .hidden sp_fiber_trampoline
    .type   sp_fiber_trampoline, @function
/* First code a new fiber runs, reached by sp_fiber_swap's ret with rsp
 * 16-byte aligned: r12 holds the entry function, r13 its argument (both
 * placed by sp_fiber_create). The entry never returns. */
sp_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   sp_fiber_trampoline, .-sp_fiber_trampoline

    .section .note.GNU-stack,"",@progbits
