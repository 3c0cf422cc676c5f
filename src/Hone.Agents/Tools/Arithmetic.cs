using System.Globalization;

namespace Hone.Agents;

/// <summary>
/// The calculator behind the calculate tool: numbers, + - * / (and ** as a power of a whole exponent), parentheses
/// and spaces, nothing else (τ-bench refuses any other character). Exact decimal arithmetic, rounded to 2 places and
/// printed as Python prints a float ("4.0", "3.33").
/// </summary>
public static class Arithmetic
{
    public static string Evaluate(string expression)
    {
        if (expression.Any(c => !"0123456789+-*/(). ".Contains(c))) return "Error: invalid characters in expression";
        var parser = new Parser(expression);
        try
        {
            decimal value = parser.Expression();
            parser.SkipSpaces();
            if (!parser.AtEnd) return "Error: invalid syntax";
            return Math.Round(value, 2, MidpointRounding.ToEven).ToString("0.0#", CultureInfo.InvariantCulture);
        }
        catch (DivideByZeroException) { return "Error: division by zero"; }
        catch (OverflowException) { return "Error: result too large"; }
        catch (FormatException) { return "Error: invalid syntax"; }
    }

    sealed class Parser(string text)
    {
        int _at;
        int _depth;

        public bool AtEnd => _at >= text.Length;

        public void SkipSpaces()
        {
            while (_at < text.Length && text[_at] == ' ') _at++;
        }

        bool Take(string token)
        {
            SkipSpaces();
            if (string.CompareOrdinal(text, _at, token, 0, token.Length) != 0) return false;
            if (token == "*" && _at + 1 < text.Length && text[_at + 1] == '*') return false;
            _at += token.Length;
            return true;
        }

        public decimal Expression()
        {
            decimal value = Term();
            while (true)
            {
                if (Take("+")) value += Term();
                else if (Take("-")) value -= Term();
                else return value;
            }
        }

        decimal Term()
        {
            decimal value = Unary();
            while (true)
            {
                if (Take("*")) value *= Unary();
                else if (Take("/")) value /= Unary();
                else return value;
            }
        }

        decimal Unary()
        {
            bool negative = false;
            while (true)
            {
                if (Take("-")) negative = !negative;
                else if (!Take("+")) break;
            }
            decimal value = Power();
            return negative ? -value : value;
        }

        decimal Power()
        {
            decimal value = Atom();
            if (!Take("**")) return value;
            decimal exponent = Unary();
            if (exponent != decimal.Truncate(exponent) || Math.Abs(exponent) > 64) throw new FormatException();
            decimal result = 1;
            for (int i = 0; i < Math.Abs(exponent); i++) result *= value;
            return exponent < 0 ? 1 / result : result;
        }

        decimal Atom()
        {
            SkipSpaces();
            if (Take("("))
            {
                if (++_depth > 100) throw new FormatException();
                decimal value = Expression();
                _depth--;
                if (!Take(")")) throw new FormatException();
                return value;
            }
            int start = _at;
            while (_at < text.Length && (char.IsAsciiDigit(text[_at]) || text[_at] == '.')) _at++;
            if (_at == start) throw new FormatException();
            return decimal.Parse(text.AsSpan(start, _at - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        }
    }
}
