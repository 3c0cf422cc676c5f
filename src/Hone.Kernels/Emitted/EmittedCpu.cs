using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Emitted;

/// <summary>
/// Whether this process may run the machine code we emit: the CPU reports the instructions (CPUID), the OS saves
/// the 512-bit register state (implied when .NET reports Avx512F, which it checks against XCR0), the platform can map
/// executable pages, and HONE_DISABLE_EMITTED=1 is not set.
/// </summary>
public static class EmittedCpu
{
    /// <summary>CPUID.(EAX=7,ECX=0):ECX bit 11.</summary>
    public static bool HasAvx512Vnni { get; } = CpuIdBit(7, 0, Register.Ecx, 11);

    /// <summary>CPUID.(EAX=7,ECX=1):EAX bit 5.</summary>
    public static bool HasAvx512Bf16 { get; } = CpuIdBit(7, 1, Register.Eax, 5);

    /// <summary>HONE_DISABLE_EMITTED=1 (or true) turns all emitted kernels off, for comparisons and bug hunts.</summary>
    public static bool DisabledByEnvironment { get; } =
        Environment.GetEnvironmentVariable("HONE_DISABLE_EMITTED") is "1" or "true" or "TRUE" or "True";

    /// <summary>Emitted EVEX code can run at all: 512-bit state enabled by the OS and executable pages available.</summary>
    public static bool CanRunEvexCode =>
        !DisabledByEnvironment && ExecutableMemory.IsPlatformSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    enum Register { Eax, Ebx, Ecx, Edx }

    static bool CpuIdBit(int leaf, int subleaf, Register register, int bit)
    {
        if (!X86Base.IsSupported) return false;
        if ((uint)X86Base.CpuId(0, 0).Eax < (uint)leaf) return false;                 // highest standard leaf
        if (subleaf > 0 && (uint)X86Base.CpuId(leaf, 0).Eax < (uint)subleaf) return false; // highest subleaf of leaf 7
        var (eax, ebx, ecx, edx) = X86Base.CpuId(leaf, subleaf);
        int value = register switch { Register.Eax => eax, Register.Ebx => ebx, Register.Ecx => ecx, _ => edx };
        return (value >> bit & 1) != 0;
    }
}
