using Hone.Tensors;
using Hone.Tensors.Emitted;
using Xunit;

namespace Hone.Tests.Emitted;

/// <summary>
/// The encoder against GNU binutils: Fixtures/Emitted/x86_encodings.txt holds, for each line of
/// tools/emitted/x86_instructions.txt, the bytes `as` produced (tools/emitted/make_x86_fixture.sh).
/// Then small emitted functions are executed to check the calling convention and the instructions' semantics.
/// </summary>
public unsafe class X86AssemblerTests
{
    static Zmm Z(int index) => new(index);
    static Memory M(Gpr @base, int displacement = 0) => Memory.At(@base, displacement);
    static Memory M(Gpr @base, Gpr index, int scale, int displacement = 0) => new(@base, index, scale, displacement);

    /// <summary>Each fixture line's text and how our encoder writes it.</summary>
    static readonly (string Text, Action<X86Assembler> Emit)[] Table =
    [
        ("push rbx", a => a.Push(Gpr.Rbx)),
        ("push r12", a => a.Push(Gpr.R12)),
        ("push r15", a => a.Push(Gpr.R15)),
        ("pop rbp", a => a.Pop(Gpr.Rbp)),
        ("pop r13", a => a.Pop(Gpr.R13)),
        ("ret", a => a.Ret()),
        ("vzeroupper", a => a.Vzeroupper()),
        ("mov rax, rdi", a => a.Mov(Gpr.Rax, Gpr.Rdi)),
        ("mov r10, rdx", a => a.Mov(Gpr.R10, Gpr.Rdx)),
        ("mov rcx, r15", a => a.Mov(Gpr.Rcx, Gpr.R15)),
        ("mov rax, QWORD PTR [rsp+0x8]", a => a.Mov(Gpr.Rax, M(Gpr.Rsp, 8))),
        ("mov r11, QWORD PTR [r12+0x40]", a => a.Mov(Gpr.R11, M(Gpr.R12, 0x40))),
        ("mov rdx, QWORD PTR [rbp]", a => a.Mov(Gpr.Rdx, M(Gpr.Rbp))),
        ("lea r10, [rdx+rcx*1]", a => a.Lea(Gpr.R10, M(Gpr.Rdx, Gpr.Rcx, 1))),
        ("lea rax, [rdi+rsi*4+0x10]", a => a.Lea(Gpr.Rax, M(Gpr.Rdi, Gpr.Rsi, 4, 0x10))),
        ("lea r11, [r10+rcx*2]", a => a.Lea(Gpr.R11, M(Gpr.R10, Gpr.Rcx, 2))),
        ("lea r9, [r13+r14*8+0x1000]", a => a.Lea(Gpr.R9, M(Gpr.R13, Gpr.R14, 8, 0x1000))),
        ("add rax, rsi", a => a.Add(Gpr.Rax, Gpr.Rsi)),
        ("add r10, rcx", a => a.Add(Gpr.R10, Gpr.Rcx)),
        ("sub r8, r9", a => a.Sub(Gpr.R8, Gpr.R9)),
        ("add rdi, 0x20", a => a.Add(Gpr.Rdi, 0x20)),
        ("add rsi, 0x300", a => a.Add(Gpr.Rsi, 0x300)),
        ("add r11, -8", a => a.Add(Gpr.R11, -8)),
        ("sub rsp, 0x80", a => a.Sub(Gpr.Rsp, 0x80)),
        ("cmp r8, 0x4", a => a.Cmp(Gpr.R8, 4)),
        ("test r9, r9", a => a.Test(Gpr.R9, Gpr.R9)),
        ("test r8, r11", a => a.Test(Gpr.R8, Gpr.R11)),
        ("dec r8", a => a.Dec(Gpr.R8)),
        ("dec rcx", a => a.Dec(Gpr.Rcx)),
        ("vmovups zmm0, ZMMWORD PTR [rdi]", a => a.Vmovups(Z(0), M(Gpr.Rdi))),
        ("vmovups zmm24, ZMMWORD PTR [rsi+0x40]", a => a.Vmovups(Z(24), M(Gpr.Rsi, 0x40))),
        ("vmovups zmm31, ZMMWORD PTR [rsi+0x2c0]", a => a.Vmovups(Z(31), M(Gpr.Rsi, 0x2c0))),
        ("vmovups zmm9, ZMMWORD PTR [r10+0x24]", a => a.Vmovups(Z(9), M(Gpr.R10, 0x24))),
        ("vmovups zmm17, ZMMWORD PTR [rdx+0x2000]", a => a.Vmovups(Z(17), M(Gpr.Rdx, 0x2000))),
        ("vmovups zmm5, ZMMWORD PTR [rsp+0x40]", a => a.Vmovups(Z(5), M(Gpr.Rsp, 0x40))),
        ("vmovups zmm6, ZMMWORD PTR [r12]", a => a.Vmovups(Z(6), M(Gpr.R12))),
        ("vmovups zmm7, ZMMWORD PTR [rbp]", a => a.Vmovups(Z(7), M(Gpr.Rbp))),
        ("vmovups zmm8, ZMMWORD PTR [r13+0x80]", a => a.Vmovups(Z(8), M(Gpr.R13, 0x80))),
        ("vmovups zmm1, ZMMWORD PTR [rdx+rcx*1]", a => a.Vmovups(Z(1), M(Gpr.Rdx, Gpr.Rcx, 1))),
        ("vmovups zmm22, ZMMWORD PTR [r10+r11*2+0x40]", a => a.Vmovups(Z(22), M(Gpr.R10, Gpr.R11, 2, 0x40))),
        ("vmovups ZMMWORD PTR [rdx], zmm0", a => a.Vmovups(M(Gpr.Rdx), Z(0))),
        ("vmovups ZMMWORD PTR [r10+0x80], zmm23", a => a.Vmovups(M(Gpr.R10, 0x80), Z(23))),
        ("vmovups ZMMWORD PTR [rdx+rcx*1+0x40], zmm11", a => a.Vmovups(M(Gpr.Rdx, Gpr.Rcx, 1, 0x40), Z(11))),
        ("vpxord zmm0, zmm0, zmm0", a => a.Vpxord(Z(0), Z(0), Z(0))),
        ("vpxord zmm23, zmm23, zmm23", a => a.Vpxord(Z(23), Z(23), Z(23))),
        ("vpxord zmm12, zmm20, zmm5", a => a.Vpxord(Z(12), Z(20), Z(5))),
        ("vpbroadcastd zmm12, DWORD PTR [rdi+0x90]", a => a.Vpbroadcastd(Z(12), M(Gpr.Rdi, 0x90))),
        ("vpbroadcastd zmm23, DWORD PTR [rdi+0x9c]", a => a.Vpbroadcastd(Z(23), M(Gpr.Rdi, 0x9c))),
        ("vpbroadcastd zmm3, DWORD PTR [r8+0x201]", a => a.Vpbroadcastd(Z(3), M(Gpr.R8, 0x201))),
        ("vbroadcastss zmm30, DWORD PTR [rax+0x4]", a => a.Vbroadcastss(Z(30), M(Gpr.Rax, 4))),
        ("vdpbf16ps zmm0, zmm24, zmm25", a => a.Vdpbf16ps(Z(0), Z(24), Z(25))),
        ("vdpbf16ps zmm21, zmm26, zmm7", a => a.Vdpbf16ps(Z(21), Z(26), Z(7))),
        ("vdpbf16ps zmm0, zmm24, DWORD PTR [rdi]{1to16}", a => a.Vdpbf16ps(Z(0), Z(24), M(Gpr.Rdi), true)),
        ("vdpbf16ps zmm23, zmm26, DWORD PTR [rdi+0x7c]{1to16}", a => a.Vdpbf16ps(Z(23), Z(26), M(Gpr.Rdi, 0x7c), true)),
        ("vdpbf16ps zmm11, zmm25, DWORD PTR [rdi+0x200]{1to16}", a => a.Vdpbf16ps(Z(11), Z(25), M(Gpr.Rdi, 0x200), true)),
        ("vdpbf16ps zmm2, zmm3, ZMMWORD PTR [rsi+0x80]", a => a.Vdpbf16ps(Z(2), Z(3), M(Gpr.Rsi, 0x80), false)),
        ("vdpbf16ps zmm19, zmm30, ZMMWORD PTR [r9+0x44]", a => a.Vdpbf16ps(Z(19), Z(30), M(Gpr.R9, 0x44), false)),
        ("vpdpbusd zmm12, zmm24, zmm1", a => a.Vpdpbusd(Z(12), Z(24), Z(1))),
        ("vpdpbusd zmm23, zmm26, zmm30", a => a.Vpdpbusd(Z(23), Z(26), Z(30))),
        ("prefetcht1 BYTE PTR [r11+0x40]", a => a.Prefetcht1(M(Gpr.R11, 0x40))),
        ("prefetcht1 BYTE PTR [r11]", a => a.Prefetcht1(M(Gpr.R11))),
        ("prefetcht1 BYTE PTR [rax+0x200]", a => a.Prefetcht1(M(Gpr.Rax, 0x200))),
        ("mov r11, QWORD PTR [rsp+0x8]", a => a.Mov(Gpr.R11, M(Gpr.Rsp, 8))),
        ("vpdpbusd zmm12, zmm24, zmm27", a => a.Vpdpbusd(Z(12), Z(24), Z(27))),
        ("vpdpbusd zmm12, zmm24, DWORD PTR [rdi]{1to16}", a => a.Vpdpbusd(Z(12), Z(24), M(Gpr.Rdi), true)),
        ("vpdpbusd zmm23, zmm26, DWORD PTR [rdi+0x7c]{1to16}", a => a.Vpdpbusd(Z(23), Z(26), M(Gpr.Rdi, 0x7c), true)),
        ("vpdpbusd zmm16, zmm29, DWORD PTR [r11+0x1000]{1to16}", a => a.Vpdpbusd(Z(16), Z(29), M(Gpr.R11, 0x1000), true)),
        ("vpdpbusd zmm4, zmm5, ZMMWORD PTR [rsi+0x600]", a => a.Vpdpbusd(Z(4), Z(5), M(Gpr.Rsi, 0x600), false)),
        ("vcvtne2ps2bf16 zmm1, zmm2, zmm3", a => a.Vcvtne2ps2bf16(Z(1), Z(2), Z(3))),
        ("vcvtne2ps2bf16 zmm28, zmm17, zmm9", a => a.Vcvtne2ps2bf16(Z(28), Z(17), Z(9))),
        ("vcvtdq2ps zmm12, zmm12", a => a.Vcvtdq2ps(Z(12), Z(12))),
        ("vcvtdq2ps zmm23, zmm31", a => a.Vcvtdq2ps(Z(23), Z(31))),
        ("vcvtdq2ps zmm8, zmm16", a => a.Vcvtdq2ps(Z(8), Z(16))),
        ("vmulps zmm12, zmm12, zmm27", a => a.Vmulps(Z(12), Z(12), Z(27))),
        ("vmulps zmm12, zmm12, DWORD PTR [rdi+0x80]{1to16}", a => a.Vmulps(Z(12), Z(12), M(Gpr.Rdi, 0x80), true)),
        ("vmulps zmm22, zmm23, DWORD PTR [rdi+0x8c]{1to16}", a => a.Vmulps(Z(22), Z(23), M(Gpr.Rdi, 0x8c), true)),
        ("vaddps zmm0, zmm1, zmm2", a => a.Vaddps(Z(0), Z(1), Z(2))),
        ("vaddps zmm29, zmm30, zmm31", a => a.Vaddps(Z(29), Z(30), Z(31))),
        ("vfmadd231ps zmm0, zmm12, zmm24", a => a.Vfmadd231ps(Z(0), Z(12), Z(24))),
        ("vfmadd231ps zmm11, zmm23, ZMMWORD PTR [rsi+0x680]", a => a.Vfmadd231ps(Z(11), Z(23), M(Gpr.Rsi, 0x680), false)),
        ("vfmadd231ps zmm5, zmm20, ZMMWORD PTR [rsi+0x6c0]", a => a.Vfmadd231ps(Z(5), Z(20), M(Gpr.Rsi, 0x6c0), false)),
        ("vfmadd231ps zmm9, zmm18, DWORD PTR [rcx+0x10]{1to16}", a => a.Vfmadd231ps(Z(9), Z(18), M(Gpr.Rcx, 0x10), true)),
        ("1: {disp32} jne 1b", a => { var l = new Label(); a.Bind(l); a.Jump(Condition.NotEqual, l); }),
        ("{disp32} jne 1f ; 1:", a => { var l = new Label(); a.Jump(Condition.NotEqual, l); a.Bind(l); }),
        ("1: {disp32} jmp 1b", a => { var l = new Label(); a.Bind(l); a.Jump(l); }),
        ("{disp32} jmp 1f ; 1:", a => { var l = new Label(); a.Jump(l); a.Bind(l); }),
        ("{disp32} je 1f ; nop ; 1:", a => { var l = new Label(); a.Jump(Condition.Equal, l); a.Nop(); a.Bind(l); }),
    ];

    static Dictionary<string, string> Fixture()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Emitted", "x86_encodings.txt");
        var result = new Dictionary<string, string>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith('#') || line.Length == 0) continue;
            var parts = line.Split('\t');
            result[parts[0]] = parts[1];
        }
        return result;
    }

    [Fact]
    public void Every_instruction_encodes_as_GNU_as_does()
    {
        var fixture = Fixture();
        Assert.True(fixture.Count >= 70, $"fixture has only {fixture.Count} lines");
        var covered = new HashSet<string>();
        foreach (var (text, emit) in Table)
        {
            Assert.True(fixture.TryGetValue(text, out var expected), $"'{text}' is not in the fixture");
            var asm = new X86Assembler();
            emit(asm);
            Assert.Equal((text, expected), (text, Convert.ToHexStringLower(asm.ToArray())));
            covered.Add(text);
        }
        Assert.Empty(fixture.Keys.Except(covered)); // every fixture line is checked
    }

    [Fact]
    public void Label_bound_after_several_jumps_patches_all_of_them()
    {
        var asm = new X86Assembler();
        var target = new Label();
        asm.Jump(Condition.Equal, target); // 6 bytes, rel32 = 12
        asm.Jump(target);                  // 5 bytes, rel32 = 6
        asm.Nop();
        asm.Bind(target);
        Assert.Equal("0f8406000000e90100000090", Convert.ToHexStringLower(asm.ToArray()));
        Assert.Throws<InvalidOperationException>(() => asm.Bind(target));
    }

    [SkippableFact]
    public void Emitted_function_follows_the_calling_convention()
    {
        Skip.IfNot(ExecutableMemory.IsPlatformSupported, "executable memory is Linux x64 only");
        // long f(long a, long b, long n) { long s = a; do { s += b; } while (--n != 0); return s; } using rbx (callee-saved).
        var asm = new X86Assembler();
        var loop = new Label();
        asm.Push(Gpr.Rbx);
        asm.Mov(Gpr.Rbx, Gpr.Rdi);
        asm.Bind(loop);
        asm.Add(Gpr.Rbx, Gpr.Rsi);
        asm.Dec(Gpr.Rdx);
        asm.Jump(Condition.NotEqual, loop);
        asm.Mov(Gpr.Rax, Gpr.Rbx);
        asm.Pop(Gpr.Rbx);
        asm.Ret();
        var code = ExecutableMemory.TryCreate(asm.ToArray(), out var failure);
        Assert.True(code != null, failure);
        var function = (delegate* unmanaged<long, long, long, long>)code.Pointer;
        Assert.Equal(1000L + 7 * 33, function(1000, 7, 33));
    }

    /// <summary>Emit f(a, b, out) = one instruction on zmm registers loaded from a and b, stored to out.</summary>
    static ExecutableMemory EmitVectorFunction(Action<X86Assembler> body)
    {
        var asm = new X86Assembler();
        asm.Vmovups(Z(17), M(Gpr.Rdx));      // accumulator from out
        asm.Vmovups(Z(24), M(Gpr.Rdi));
        body(asm);
        asm.Vmovups(M(Gpr.Rdx), Z(17));
        asm.Vzeroupper();
        asm.Ret();
        var code = ExecutableMemory.TryCreate(asm.ToArray(), out var failure);
        Assert.True(code != null, failure);
        return code;
    }

    [SkippableFact]
    public void Vdpbf16ps_adds_two_bf16_products_per_lane()
    {
        Skip.IfNot(BFloat16Kernels.EmittedAvailable, BFloat16Kernels.EmittedUnavailableReason ?? "");
        var rng = new Random(5);
        var left = new ushort[32]; var right = new ushort[32]; var accumulator = new float[16];
        for (int i = 0; i < 32; i++)
        {
            left[i] = NumberConversion.SingleToBFloat16((float)(rng.NextDouble() * 4 - 2));
            right[i] = NumberConversion.SingleToBFloat16((float)(rng.NextDouble() * 4 - 2));
        }
        for (int i = 0; i < 16; i++) accumulator[i] = (float)rng.NextDouble();
        var expected = new float[16];
        for (int i = 0; i < 16; i++)
        {
            float odd = NumberConversion.BFloat16ToSingle(left[2 * i + 1]) * NumberConversion.BFloat16ToSingle(right[2 * i + 1]);
            float even = NumberConversion.BFloat16ToSingle(left[2 * i]) * NumberConversion.BFloat16ToSingle(right[2 * i]);
            expected[i] = accumulator[i] + odd + even; // products are exact; two fp32 additions, odd first (SDM order)
        }
        var code = EmitVectorFunction(a => a.Vdpbf16ps(Z(17), Z(24), M(Gpr.Rsi), false));
        var function = (delegate* unmanaged<ushort*, ushort*, float*, void>)code.Pointer;
        fixed (ushort* l = left, r = right) fixed (float* c = accumulator) function(l, r, c);
        for (int i = 0; i < 16; i++) Assert.Equal(expected[i], accumulator[i], 6);
    }

    [SkippableFact]
    public void Vpdpbusd_adds_four_unsigned_by_signed_products_per_lane()
    {
        Skip.IfNot(Int8Kernels.EmittedAvailable, Int8Kernels.EmittedUnavailableReason ?? "");
        var rng = new Random(6);
        var unsignedBytes = new byte[64]; var signedBytes = new sbyte[64]; var accumulator = new int[16];
        rng.NextBytes(unsignedBytes);
        for (int i = 0; i < 64; i++) signedBytes[i] = (sbyte)rng.Next(-128, 128);
        for (int i = 0; i < 16; i++) accumulator[i] = rng.Next(-1_000_000, 1_000_000);
        var expected = new int[16];
        for (int i = 0; i < 16; i++)
        {
            expected[i] = accumulator[i];
            for (int t = 0; t < 4; t++) expected[i] += unsignedBytes[4 * i + t] * signedBytes[4 * i + t];
        }
        var code = EmitVectorFunction(a => a.Vpdpbusd(Z(17), Z(24), M(Gpr.Rsi), false));
        var function = (delegate* unmanaged<byte*, sbyte*, int*, void>)code.Pointer;
        fixed (byte* u = unsignedBytes) fixed (sbyte* s = signedBytes) fixed (int* c = accumulator) function(u, s, c);
        Assert.Equal(expected, accumulator);
    }

    [SkippableFact]
    public void Broadcast_operand_reads_one_dword_for_all_lanes()
    {
        Skip.IfNot(Int8Kernels.EmittedAvailable, Int8Kernels.EmittedUnavailableReason ?? "");
        var unsignedBytes = new byte[64]; var signedBytes = new sbyte[64]; var accumulator = new int[16];
        for (int i = 0; i < 64; i++) unsignedBytes[i] = (byte)(i + 1);
        signedBytes[8] = 1; signedBytes[9] = -2; signedBytes[10] = 3; signedBytes[11] = -4; // dword at offset 8
        var code = EmitVectorFunction(a => a.Vpdpbusd(Z(17), Z(24), M(Gpr.Rsi, 8), true));
        var function = (delegate* unmanaged<byte*, sbyte*, int*, void>)code.Pointer;
        fixed (byte* u = unsignedBytes) fixed (sbyte* s = signedBytes) fixed (int* c = accumulator) function(u, s, c);
        for (int i = 0; i < 16; i++)
            Assert.Equal((4 * i + 1) - 2 * (4 * i + 2) + 3 * (4 * i + 3) - 4 * (4 * i + 4), accumulator[i]);
    }

    [Fact]
    public void Emitted_kernels_are_available_wherever_the_cpu_and_os_allow_them()
    {
        // Guards against emission silently failing (and every call quietly taking the fallback).
        if (EmittedCpu.CanRunEvexCode && EmittedCpu.HasAvx512Bf16)
            Assert.True(BFloat16Kernels.EmittedAvailable, BFloat16Kernels.EmittedUnavailableReason);
        else Assert.False(BFloat16Kernels.EmittedAvailable);
        if (EmittedCpu.CanRunEvexCode && EmittedCpu.HasAvx512Vnni)
            Assert.True(Int8Kernels.EmittedAvailable, Int8Kernels.EmittedUnavailableReason);
        else Assert.False(Int8Kernels.EmittedAvailable);
    }
}
