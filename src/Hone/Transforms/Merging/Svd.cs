namespace Hone.Transforms.Merging;

/// <summary>
/// Small dense linear algebra in fp64 for re-factoring low-rank products: a thin Householder QR and a one-sided Jacobi
/// SVD (Hestenes). One-sided Jacobi was chosen for being short and accurate: it orthogonalizes the columns by plane
/// rotations until every pair is orthogonal to working precision, so small singular values come out with high relative
/// accuracy and no bidiagonalization is needed. It is O(n³) per sweep, meant for the r×r cores of
/// <see cref="LowRankProduct"/>, not for whole weight matrices. Matrices are row-major double[rows, cols].
/// </summary>
public static class Svd
{
    /// <summary>M[m, n] = U[m, k]·diag(S[k])·Vᵀ[k, n] with k = min(m, n), S descending, V orthogonal, U with orthonormal columns where S is nonzero (a column of U for a zero singular value is
    /// zero: it multiplies nothing).</summary>
    public static (double[,] U, double[] S, double[,] V) Decompose(double[,] m)
    {
        int rows = m.GetLength(0), cols = m.GetLength(1);
        if (rows < cols)
        {
            // Jacobi below orthogonalizes columns, which needs rows ≥ cols: decompose Mᵀ = V·S·Uᵀ instead.
            var (u, s, v) = Decompose(Transpose(m));
            return (v, s, u);
        }
        var a = (double[,])m.Clone();                 // becomes U·S column by column
        var vAcc = Identity(cols);
        for (int sweep = 0; sweep < 60; sweep++)
        {
            bool rotated = false;
            for (int p = 0; p < cols - 1; p++)
                for (int q = p + 1; q < cols; q++)
                {
                    double alpha = 0, beta = 0, gamma = 0;
                    for (int i = 0; i < rows; i++)
                    {
                        alpha += a[i, p] * a[i, p]; beta += a[i, q] * a[i, q]; gamma += a[i, p] * a[i, q];
                    }
                    if (Math.Abs(gamma) <= 1e-15 * Math.Sqrt(alpha * beta) || gamma == 0) continue;
                    rotated = true;
                    // The rotation that makes columns p and q orthogonal (Golub and Van Loan, §8.6.3).
                    double zeta = (beta - alpha) / (2 * gamma);
                    double t = Math.Sign(zeta == 0 ? 1 : zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                    double c = 1 / Math.Sqrt(1 + t * t), s = c * t;
                    for (int i = 0; i < rows; i++)
                    {
                        double ap = a[i, p], aq = a[i, q];
                        a[i, p] = c * ap - s * aq; a[i, q] = s * ap + c * aq;
                    }
                    for (int i = 0; i < cols; i++)
                    {
                        double vp = vAcc[i, p], vq = vAcc[i, q];
                        vAcc[i, p] = c * vp - s * vq; vAcc[i, q] = s * vp + c * vq;
                    }
                }
            if (!rotated) break;
        }
        var norms = new double[cols];
        for (int j = 0; j < cols; j++)
        {
            double sum = 0;
            for (int i = 0; i < rows; i++) sum += a[i, j] * a[i, j];
            norms[j] = Math.Sqrt(sum);
        }
        var order = Enumerable.Range(0, cols).OrderByDescending(j => norms[j]).ToArray();
        var uOut = new double[rows, cols];
        var vOut = new double[cols, cols];
        var sOut = new double[cols];
        for (int k = 0; k < cols; k++)
        {
            int j = order[k];
            sOut[k] = norms[j];
            for (int i = 0; i < cols; i++) vOut[i, k] = vAcc[i, j];
            if (norms[j] > 0)
                for (int i = 0; i < rows; i++) uOut[i, k] = a[i, j] / norms[j];
        }
        return (uOut, sOut, vOut);
    }

    /// <summary>Thin Householder QR: M[m, n] = Q[m, k]·R[k, n], k = min(m, n), Q with orthonormal columns.</summary>
    public static (double[,] Q, double[,] R) ThinQr(double[,] m)
    {
        int rows = m.GetLength(0), cols = m.GetLength(1), k = Math.Min(rows, cols);
        var a = (double[,])m.Clone();
        var reflectors = new List<double[]>();
        for (int j = 0; j < k; j++)
        {
            double norm = 0;
            for (int i = j; i < rows; i++) norm += a[i, j] * a[i, j];
            norm = Math.Sqrt(norm);
            var v = new double[rows];
            if (norm == 0) { reflectors.Add(v); continue; }
            double alpha = a[j, j] > 0 ? -norm : norm;
            for (int i = j; i < rows; i++) v[i] = a[i, j];
            v[j] -= alpha;
            double vNorm = Math.Sqrt(v.Sum(x => x * x));
            if (vNorm == 0) { reflectors.Add(new double[rows]); continue; }
            for (int i = j; i < rows; i++) v[i] /= vNorm;
            reflectors.Add(v);
            for (int c = j; c < cols; c++)
            {
                double dot = 0;
                for (int i = j; i < rows; i++) dot += v[i] * a[i, c];
                for (int i = j; i < rows; i++) a[i, c] -= 2 * dot * v[i];
            }
        }
        var r = new double[k, cols];
        for (int i = 0; i < k; i++)
            for (int c = i; c < cols; c++) r[i, c] = a[i, c];
        // Q = H₀·H₁·…·H_{k−1} applied to the first k unit vectors.
        var q = new double[rows, k];
        for (int i = 0; i < k; i++) q[i, i] = 1;
        for (int j = k - 1; j >= 0; j--)
        {
            var v = reflectors[j];
            for (int c = 0; c < k; c++)
            {
                double dot = 0;
                for (int i = j; i < rows; i++) dot += v[i] * q[i, c];
                for (int i = j; i < rows; i++) q[i, c] -= 2 * dot * v[i];
            }
        }
        return (q, r);
    }

    public static double[,] Transpose(double[,] m)
    {
        int rows = m.GetLength(0), cols = m.GetLength(1);
        var t = new double[cols, rows];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) t[j, i] = m[i, j];
        return t;
    }

    public static double[,] Multiply(double[,] a, double[,] b)
    {
        int n = a.GetLength(0), inner = a.GetLength(1), m = b.GetLength(1);
        if (b.GetLength(0) != inner) throw new ArgumentException($"[{n}, {inner}]·[{b.GetLength(0)}, {m}] do not chain");
        var c = new double[n, m];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < inner; k++)
            {
                double x = a[i, k];
                if (x == 0) continue;
                for (int j = 0; j < m; j++) c[i, j] += x * b[k, j];
            }
        return c;
    }

    static double[,] Identity(int n)
    {
        var i = new double[n, n];
        for (int k = 0; k < n; k++) i[k, k] = 1;
        return i;
    }
}

/// <summary>
/// The best rank-r approximation (Eckart–Young) of a product ΔW[out, in] = B[out, R]·A[R, in] without forming ΔW:
/// B = Q_B·R_B and Aᵀ = Q_A·R_A (thin QR), so ΔW = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, and the SVD of the small core
/// R_B·R_Aᵀ = U'·S·V'ᵀ gives ΔW's: U = Q_B·U', V = Q_A·V'. The factors split the singular values evenly:
/// B' = U_r·√S_r [out, r], A' = √S_r·V_rᵀ [r, in].
/// </summary>
public static class LowRankProduct
{
    /// <returns>B'[out, rank] and A'[rank, in] with B'·A' the best rank-<paramref name="rank"/> approximation of B·A
    /// (zero rows and columns past the product's own rank), and ΔW's singular values.</returns>
    public static (double[,] B, double[,] A, double[] Singular) Truncate(double[,] b, double[,] a, int rank)
    {
        int outputs = b.GetLength(0), inner = b.GetLength(1), inputs = a.GetLength(1);
        if (a.GetLength(0) != inner) throw new ArgumentException($"B [{outputs}, {inner}] and A [{a.GetLength(0)}, {inputs}] do not chain");
        var (qb, rb) = Svd.ThinQr(b);
        var (qa, ra) = Svd.ThinQr(Svd.Transpose(a));
        var core = Svd.Multiply(rb, Svd.Transpose(ra));
        var (u, s, v) = Svd.Decompose(core);
        var uFull = Svd.Multiply(qb, u);                // [out, k]
        var vFull = Svd.Multiply(qa, v);                // [in, k]
        var newB = new double[outputs, rank];
        var newA = new double[rank, inputs];
        for (int k = 0; k < Math.Min(rank, s.Length); k++)
        {
            double root = Math.Sqrt(s[k]);
            for (int i = 0; i < outputs; i++) newB[i, k] = uFull[i, k] * root;
            for (int j = 0; j < inputs; j++) newA[k, j] = vFull[j, k] * root;
        }
        return (newB, newA, s);
    }
}
