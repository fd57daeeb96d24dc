/* The fiber switch for x86-64 System V: saves the callee-saved registers and
 * the stack pointer of the running context, loads the other's. No syscall, no
 * signal mask: a few instructions. MXCSR and the x87 control word are left
 * alone: they are thread-wide settings, not per-task state. */
#if defined(__CET__) && (__CET__ & 1)
#define SP_ENDBR endbr64
#define SP_NOTRACK notrack
#else
#define SP_ENDBR
#define SP_NOTRACK
#endif

    .text
    .p2align 4
    .globl  sp_fiber_swap
    .hidden sp_fiber_swap
    .type   sp_fiber_swap, @function
/* void sp_fiber_swap(void **save_sp, void *new_sp) */
sp_fiber_swap:
    .cfi_startproc
    SP_ENDBR
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
    /* Not ret: its return-stack prediction is always wrong here (we return
     * to another context's caller), costing about half the switch. */
    popq    %rcx
    SP_NOTRACK jmpq *%rcx
    .cfi_endproc
    .size   sp_fiber_swap, .-sp_fiber_swap

    .p2align 4
    .globl  sp_fiber_trampoline
    .hidden sp_fiber_trampoline
    .type   sp_fiber_trampoline, @function
/* First code a new fiber runs, reached from sp_fiber_swap with rsp 16-byte
 * aligned: r12 holds the entry function, r13 its argument (both placed by
 * sp_fiber_create). The entry never returns. */
sp_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    SP_ENDBR
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   sp_fiber_trampoline, .-sp_fiber_trampoline

    .section .note.GNU-stack,"",@progbits
