using System.Text;

namespace Hone.Formats;

/// <summary>RFC 4180 CSV: comma-separated, fields in double quotes may hold commas, newlines and doubled quotes.</summary>
public static class Csv
{
    /// <summary>Rows with the 1-based line each starts on; <paramref name="file"/> names the source in errors.</summary>
    public static IEnumerable<(long Line, List<string> Cells)> Rows(TextReader reader, string file)
    {
        var cells = new List<string>();
        var cell = new StringBuilder();
        long line = 1, rowStart = 1;
        bool quoted = false, any = false;
        int c;
        while ((c = reader.Read()) >= 0)
        {
            if (quoted)
            {
                if (c == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); cell.Append('"'); }
                    else quoted = false;
                }
                else { if (c == '\n') line++; cell.Append((char)c); }
                continue;
            }
            switch (c)
            {
                case '"' when cell.Length == 0: quoted = true; any = true; break;
                case ',': cells.Add(cell.ToString()); cell.Clear(); any = true; break;
                case '\r': break;
                case '\n':
                    if (any || cell.Length > 0) { cells.Add(cell.ToString()); yield return (rowStart, cells); cells = []; }
                    cell.Clear(); any = false;
                    rowStart = ++line;
                    break;
                default: cell.Append((char)c); any = true; break;
            }
        }
        if (quoted) throw new DataFormatException(file, rowStart, "a quoted CSV field is not closed");
        if (any || cell.Length > 0) { cells.Add(cell.ToString()); yield return (rowStart, cells); }
    }
}
