namespace Hone.Inference;

/// <summary>Stop strings over streamed text: where the first one starts, and how much of the tail to hold back because
/// it could still become one.</summary>
public static class StopStrings
{
    /// <summary>Where the earliest occurrence of any stop string starts in <paramref name="text"/>, or -1.</summary>
    public static int FirstStop(System.Text.StringBuilder text, string[] stops)
    {
        if (stops.Length == 0) return -1;
        string s = text.ToString();
        int best = -1;
        foreach (var stop in stops)
        {
            int at = s.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best)) best = at;
        }
        return best;
    }

    /// <summary>Characters at the end that are a proper prefix of some stop string (not safe to show yet).</summary>
    public static int HoldBack(System.Text.StringBuilder text, string[] stops)
    {
        int hold = 0;
        foreach (var stop in stops)
            for (int k = Math.Min(stop.Length - 1, text.Length); k > hold; k--)
            {
                bool match = true;
                for (int j = 0; j < k && match; j++) match = text[text.Length - k + j] == stop[j];
                if (match) { hold = k; break; }
            }
        return hold;
    }
}
