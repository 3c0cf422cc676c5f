namespace Hone.Tensors.Emitted;

/// <summary>x86-64 general-purpose registers, numbered as the instruction encoding numbers them.</summary>
public enum Gpr
{
    Rax = 0, Rcx = 1, Rdx = 2, Rbx = 3, Rsp = 4, Rbp = 5, Rsi = 6, Rdi = 7,
    R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15,
}

/// <summary>Condition codes of jcc, as encoded in the low nibble of the opcode.</summary>
public enum Condition
{
    Overflow = 0x0, NoOverflow = 0x1, Below = 0x2, AboveOrEqual = 0x3, Equal = 0x4, NotEqual = 0x5,
    BelowOrEqual = 0x6, Above = 0x7, Sign = 0x8, NoSign = 0x9, Less = 0xC, GreaterOrEqual = 0xD,
    LessOrEqual = 0xE, Greater = 0xF,
}

/// <summary>One of the 32 AVX-512 vector registers zmm0..zmm31.</summary>
public readonly record struct Zmm(int Index)
{
    public override string ToString() => $"zmm{Index}";
}

/// <summary>A memory operand [base + index·scale + displacement].</summary>
public readonly record struct Memory(Gpr Base, Gpr? Index = null, int Scale = 1, int Displacement = 0)
{
    public static Memory At(Gpr @base, int displacement = 0) => new(@base, null, 1, displacement);
}

/// <summary>A jump target; bound to an offset in the code once <see cref="X86Assembler.Bind"/> is called.</summary>
public sealed class Label
{
    internal int Position = -1;
    internal readonly List<int> Fixups = []; // offsets of rel32 fields that jump here
}

/// <summary>
/// A minimal x86-64 assembler for the instructions our emitted kernels use: a few general-purpose
/// instructions for loops and the System V prologue/epilogue, and EVEX-encoded 512-bit vector instructions
/// (including AVX512_BF16 vdpbf16ps and AVX512_VNNI vpdpbusd, which .NET does not expose as intrinsics).
/// Only unmasked, 512-bit forms; memory operands use disp8·N compression as the hardware requires.
/// Jumps always use 32-bit displacements (kernel loop bodies are longer than a rel8 reaches anyway).
/// </summary>
public sealed class X86Assembler
{
    readonly List<byte> _code = [];

    public int Position => _code.Count;

    public byte[] ToArray() => [.. _code];

    // ---- general-purpose instructions --------------------------------------------------------------

    public void Push(Gpr register)
    {
        if ((int)register >= 8) Byte(0x41);
        Byte((byte)(0x50 + ((int)register & 7)));
    }

    public void Pop(Gpr register)
    {
        if ((int)register >= 8) Byte(0x41);
        Byte((byte)(0x58 + ((int)register & 7)));
    }

    public void Ret() => Byte(0xC3);

    public void Nop() => Byte(0x90);

    /// <summary>vzeroupper: leave the upper vector state clean before returning to code that may use SSE.</summary>
    /// <summary>prefetcht1 [memory]: bring the line into L2 (no REX.W; a REX byte only when a register needs it).</summary>
    public void Prefetcht1(Memory memory)
    {
        int index = memory.Index is { } i ? (int)i : 0;
        int rex = 0x40 | ((index >> 3) & 1) << 1 | (((int)memory.Base >> 3) & 1);
        if (rex != 0x40) Byte((byte)rex);
        Byte(0x0F); Byte(0x18);
        ModRmMemory(2, memory, 1);
    }

    public void Vzeroupper() { Byte(0xC5); Byte(0xF8); Byte(0x77); }

    /// <summary>mov destination, source (64-bit registers).</summary>
    public void Mov(Gpr destination, Gpr source) => LegacyRegisterRegister(0x89, (int)source, (int)destination);

    /// <summary>mov destination, qword [memory].</summary>
    public void Mov(Gpr destination, Memory source) => LegacyMemory([0x8B], (int)destination, source);

    /// <summary>lea destination, [memory].</summary>
    public void Lea(Gpr destination, Memory source) => LegacyMemory([0x8D], (int)destination, source);

    /// <summary>add destination, source (64-bit).</summary>
    public void Add(Gpr destination, Gpr source) => LegacyRegisterRegister(0x01, (int)source, (int)destination);

    /// <summary>sub destination, source (64-bit).</summary>
    public void Sub(Gpr destination, Gpr source) => LegacyRegisterRegister(0x29, (int)source, (int)destination);

    /// <summary>add destination, immediate (sign-extended to 64 bits).</summary>
    public void Add(Gpr destination, int immediate) => GroupOneImmediate(0, destination, immediate);

    /// <summary>sub destination, immediate (sign-extended to 64 bits).</summary>
    public void Sub(Gpr destination, int immediate) => GroupOneImmediate(5, destination, immediate);

    /// <summary>cmp register, immediate (sign-extended to 64 bits).</summary>
    public void Cmp(Gpr register, int immediate) => GroupOneImmediate(7, register, immediate);

    /// <summary>test left, right (64-bit).</summary>
    public void Test(Gpr left, Gpr right) => LegacyRegisterRegister(0x85, (int)right, (int)left);

    /// <summary>dec register (64-bit).</summary>
    public void Dec(Gpr register) => LegacyRegisterRegister(0xFF, 1, (int)register);

    /// <summary>jcc label with a 32-bit displacement.</summary>
    public void Jump(Condition condition, Label target)
    {
        Byte(0x0F); Byte((byte)(0x80 | (int)condition));
        Rel32(target);
    }

    /// <summary>jmp label with a 32-bit displacement.</summary>
    public void Jump(Label target)
    {
        Byte(0xE9);
        Rel32(target);
    }

    public void Bind(Label label)
    {
        if (label.Position >= 0) throw new InvalidOperationException("label bound twice");
        label.Position = Position;
        foreach (int fixup in label.Fixups) PatchRel32(fixup, label.Position);
        label.Fixups.Clear();
    }

    void Rel32(Label target)
    {
        int field = Position;
        Int32(0);
        if (target.Position >= 0) PatchRel32(field, target.Position);
        else target.Fixups.Add(field);
    }

    void PatchRel32(int field, int target)
    {
        int relative = target - (field + 4); // relative to the end of the instruction, which the field ends
        for (int i = 0; i < 4; i++) _code[field + i] = (byte)(relative >> (8 * i));
    }

    /// <summary>Opcode with ModRM in register-direct form: REX.W, reg field, r/m register.</summary>
    void LegacyRegisterRegister(byte opcode, int reg, int rm)
    {
        Byte((byte)(0x48 | ((reg >> 3) & 1) << 2 | ((rm >> 3) & 1)));
        Byte(opcode);
        Byte((byte)(0xC0 | (reg & 7) << 3 | (rm & 7)));
    }

    /// <summary>The 0x83 / 0x81 group: op /digit r/m64, imm8 or imm32.</summary>
    void GroupOneImmediate(int digit, Gpr register, int immediate)
    {
        bool small = immediate is >= sbyte.MinValue and <= sbyte.MaxValue;
        LegacyRegisterRegister(small ? (byte)0x83 : (byte)0x81, digit, (int)register);
        if (small) Byte((byte)immediate); else Int32(immediate);
    }

    void LegacyMemory(byte[] opcode, int reg, Memory memory)
    {
        int index = memory.Index is { } i ? (int)i : 0;
        Byte((byte)(0x48 | ((reg >> 3) & 1) << 2 | ((index >> 3) & 1) << 1 | (((int)memory.Base >> 3) & 1)));
        foreach (var b in opcode) Byte(b);
        ModRmMemory(reg, memory, 1);
    }

    // ---- EVEX vector instructions ------------------------------------------------------------------

    const int Map0F = 1, Map0F38 = 2;
    const int PrefixNone = 0, Prefix66 = 1, PrefixF3 = 2, PrefixF2 = 3;

    /// <summary>vmovups zmm, [memory] (full 64-byte load, no alignment needed).</summary>
    public void Vmovups(Zmm destination, Memory source) => EvexMemory(Map0F, PrefixNone, 0x10, destination.Index, 0, source, false, 64);

    /// <summary>vmovups [memory], zmm.</summary>
    public void Vmovups(Memory destination, Zmm source) => EvexMemory(Map0F, PrefixNone, 0x11, source.Index, 0, destination, false, 64);

    /// <summary>vpxord destination, left, right.</summary>
    public void Vpxord(Zmm destination, Zmm left, Zmm right) => EvexRegister(Map0F, Prefix66, 0xEF, destination.Index, left.Index, right.Index);

    /// <summary>vpbroadcastd zmm, dword [memory].</summary>
    public void Vpbroadcastd(Zmm destination, Memory source) => EvexMemory(Map0F38, Prefix66, 0x58, destination.Index, 0, source, false, 4);

    /// <summary>vbroadcastss zmm, dword [memory].</summary>
    public void Vbroadcastss(Zmm destination, Memory source) => EvexMemory(Map0F38, Prefix66, 0x18, destination.Index, 0, source, false, 4);

    /// <summary>vdpbf16ps accumulator, left, right: per fp32 lane, accumulator += left.bf16[2i+1]·right.bf16[2i+1] + left.bf16[2i]·right.bf16[2i].</summary>
    public void Vdpbf16ps(Zmm accumulator, Zmm left, Zmm right) => EvexRegister(Map0F38, PrefixF3, 0x52, accumulator.Index, left.Index, right.Index);

    /// <summary>vdpbf16ps accumulator, left, [memory] (or dword [memory]{1to16} when broadcast).</summary>
    public void Vdpbf16ps(Zmm accumulator, Zmm left, Memory right, bool broadcast) =>
        EvexMemory(Map0F38, PrefixF3, 0x52, accumulator.Index, left.Index, right, broadcast, broadcast ? 4 : 64);

    /// <summary>vpdpbusd accumulator, unsignedBytes, signedBytes: per int32 lane, accumulator += Σ of four u8·s8 products.</summary>
    public void Vpdpbusd(Zmm accumulator, Zmm unsignedBytes, Zmm signedBytes) => EvexRegister(Map0F38, Prefix66, 0x50, accumulator.Index, unsignedBytes.Index, signedBytes.Index);

    /// <summary>vpdpbusd accumulator, unsignedBytes, [memory] (or dword [memory]{1to16} when broadcast).</summary>
    public void Vpdpbusd(Zmm accumulator, Zmm unsignedBytes, Memory signedBytes, bool broadcast) =>
        EvexMemory(Map0F38, Prefix66, 0x50, accumulator.Index, unsignedBytes.Index, signedBytes, broadcast, broadcast ? 4 : 64);

    /// <summary>vcvtne2ps2bf16 destination, high, low: 32 bf16 (round to nearest even), low's 16 in the lower half.</summary>
    public void Vcvtne2ps2bf16(Zmm destination, Zmm high, Zmm low) => EvexRegister(Map0F38, PrefixF2, 0x72, destination.Index, high.Index, low.Index);

    /// <summary>vcvtdq2ps destination, source (int32 → fp32, round to nearest even).</summary>
    public void Vcvtdq2ps(Zmm destination, Zmm source) => EvexRegister(Map0F, PrefixNone, 0x5B, destination.Index, 0, source.Index);

    /// <summary>vmulps destination, left, right.</summary>
    public void Vmulps(Zmm destination, Zmm left, Zmm right) => EvexRegister(Map0F, PrefixNone, 0x59, destination.Index, left.Index, right.Index);

    /// <summary>vmulps destination, left, [memory] (or dword [memory]{1to16} when broadcast).</summary>
    public void Vmulps(Zmm destination, Zmm left, Memory right, bool broadcast) =>
        EvexMemory(Map0F, PrefixNone, 0x59, destination.Index, left.Index, right, broadcast, broadcast ? 4 : 64);

    /// <summary>vaddps destination, left, right.</summary>
    public void Vaddps(Zmm destination, Zmm left, Zmm right) => EvexRegister(Map0F, PrefixNone, 0x58, destination.Index, left.Index, right.Index);

    /// <summary>vfmadd231ps accumulator, left, right: accumulator += left·right (one rounding).</summary>
    public void Vfmadd231ps(Zmm accumulator, Zmm left, Zmm right) => EvexRegister(Map0F38, Prefix66, 0xB8, accumulator.Index, left.Index, right.Index);

    /// <summary>vfmadd231ps accumulator, left, [memory] (or dword [memory]{1to16} when broadcast).</summary>
    public void Vfmadd231ps(Zmm accumulator, Zmm left, Memory right, bool broadcast) =>
        EvexMemory(Map0F38, Prefix66, 0xB8, accumulator.Index, left.Index, right, broadcast, broadcast ? 4 : 64);

    /// <summary>EVEX prefix: 62, P0 = R X B R' 0 mmm, P1 = W vvvv 1 pp, P2 = z L'L b V' aaa (all register bits inverted).
    /// 512-bit length, no masking, W0.</summary>
    /// <param name="bBit">bit 3 of the base register, or of a register r/m</param>
    /// <param name="xBit">bit 3 of the index register, or bit 4 of a register r/m</param>
    void Evex(int map, int prefix, int reg, int vvvv, int bBit, int xBit, bool broadcast)
    {
        Byte(0x62);
        int p0 = (~reg >> 3 & 1) << 7 | (~xBit & 1) << 6 | (~bBit & 1) << 5 | (~reg >> 4 & 1) << 4 | map;
        int p1 = (~vvvv & 0xF) << 3 | 1 << 2 | prefix;
        int p2 = 0b10 << 5 | (broadcast ? 1 : 0) << 4 | (~vvvv >> 4 & 1) << 3;
        Byte((byte)p0); Byte((byte)p1); Byte((byte)p2);
    }

    void EvexRegister(int map, int prefix, byte opcode, int reg, int vvvv, int rm)
    {
        // For a register r/m, EVEX.B extends bit 3 and EVEX.X extends bit 4 of the register number.
        Evex(map, prefix, reg, vvvv, rm >> 3 & 1, rm >> 4 & 1, false);
        Byte(opcode);
        Byte((byte)(0xC0 | (reg & 7) << 3 | (rm & 7)));
    }

    void EvexMemory(int map, int prefix, byte opcode, int reg, int vvvv, Memory memory, bool broadcast, int compressionScale)
    {
        int index = memory.Index is { } i ? (int)i : 0;
        Evex(map, prefix, reg, vvvv, (int)memory.Base >> 3 & 1, index >> 3 & 1, broadcast);
        Byte(opcode);
        ModRmMemory(reg, memory, compressionScale);
    }

    /// <summary>ModRM (+SIB) (+disp8/disp32) for [base + index·scale + displacement]. An 8-bit displacement is
    /// stored divided by <paramref name="compressionScale"/> (EVEX disp8·N); legacy encodings pass 1.</summary>
    void ModRmMemory(int reg, Memory memory, int compressionScale)
    {
        int baseLow = (int)memory.Base & 7;
        int displacement = memory.Displacement;
        bool needsSib = memory.Index.HasValue || baseLow == 4; // rsp / r12 as base always take a SIB byte
        int mod;
        if (displacement == 0 && baseLow != 5) mod = 0;          // rbp / r13 with mod 00 would mean RIP/no-base
        else if (displacement % compressionScale == 0 && displacement / compressionScale is >= sbyte.MinValue and <= sbyte.MaxValue) mod = 1;
        else mod = 2;
        Byte((byte)(mod << 6 | (reg & 7) << 3 | (needsSib ? 4 : baseLow)));
        if (needsSib)
        {
            int scaleBits = memory.Scale switch
            {
                1 => 0, 2 => 1, 4 => 2, 8 => 3,
                _ => throw new ArgumentException($"scale {memory.Scale} is not 1, 2, 4 or 8"),
            };
            int index = memory.Index is { } i ? (int)i : 4; // 100 = no index
            if (memory.Index == Gpr.Rsp) throw new ArgumentException("rsp cannot be an index register");
            Byte((byte)(scaleBits << 6 | (index & 7) << 3 | baseLow));
        }
        if (mod == 1) Byte((byte)(sbyte)(displacement / compressionScale));
        else if (mod == 2) Int32(displacement);
    }

    void Byte(byte value) => _code.Add(value);

    void Int32(int value)
    {
        for (int i = 0; i < 4; i++) _code.Add((byte)(value >> (8 * i)));
    }
}
