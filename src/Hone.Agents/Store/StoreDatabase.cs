using System.Security.Cryptography;
using System.Text;
using Hone.Formats;
using Microsoft.Data.Sqlite;

namespace Hone.Agents;

/// <summary>
/// The store: users with payment methods, products with variants, orders with items, fulfillments and payment history,
/// in SQLite. A trial works on an in-memory copy (<see cref="Copy"/>), so the file on disk is never changed and hundreds
/// of trials stay fast. Money is integer cents.
/// </summary>
public sealed class StoreDatabase : IDisposable
{
    /// <summary>The tables and their keys, in the order the canonical hash reads them.</summary>
    public static readonly IReadOnlyList<(string Table, string Key)> Tables =
    [
        ("users", "user_id"),
        ("payment_methods", "payment_method_id"),
        ("products", "product_id"),
        ("variants", "item_id"),
        ("orders", "order_id"),
        ("order_items", "order_id, position"),
        ("fulfillments", "order_id, position"),
        ("payments", "order_id, position"),
        ("transfers", "position"),
    ];

    public const string Schema = """
        CREATE TABLE users (user_id TEXT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL, email TEXT NOT NULL,
          address1 TEXT NOT NULL, address2 TEXT NOT NULL, city TEXT NOT NULL, state TEXT NOT NULL, country TEXT NOT NULL, zip TEXT NOT NULL);
        CREATE TABLE payment_methods (payment_method_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, position INTEGER NOT NULL,
          source TEXT NOT NULL, brand TEXT, last_four TEXT, balance_cents INTEGER);
        CREATE TABLE products (product_id TEXT PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE variants (item_id TEXT PRIMARY KEY, product_id TEXT NOT NULL, position INTEGER NOT NULL, options TEXT NOT NULL,
          available INTEGER NOT NULL, price_cents INTEGER NOT NULL);
        CREATE TABLE orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, position INTEGER NOT NULL,
          address1 TEXT NOT NULL, address2 TEXT NOT NULL, city TEXT NOT NULL, state TEXT NOT NULL, country TEXT NOT NULL, zip TEXT NOT NULL,
          status TEXT NOT NULL, cancel_reason TEXT, return_items TEXT, return_payment_method_id TEXT,
          exchange_items TEXT, exchange_new_items TEXT, exchange_payment_method_id TEXT, exchange_price_difference_cents INTEGER);
        CREATE TABLE order_items (order_id TEXT NOT NULL, position INTEGER NOT NULL, item_id TEXT NOT NULL, product_id TEXT NOT NULL,
          name TEXT NOT NULL, price_cents INTEGER NOT NULL, options TEXT NOT NULL, PRIMARY KEY (order_id, position));
        CREATE TABLE fulfillments (order_id TEXT NOT NULL, position INTEGER NOT NULL, tracking_ids TEXT NOT NULL, item_ids TEXT NOT NULL,
          PRIMARY KEY (order_id, position));
        CREATE TABLE payments (order_id TEXT NOT NULL, position INTEGER NOT NULL, transaction_type TEXT NOT NULL, amount_cents INTEGER NOT NULL,
          payment_method_id TEXT NOT NULL, PRIMARY KEY (order_id, position));
        CREATE TABLE transfers (position INTEGER PRIMARY KEY);
        CREATE INDEX users_email ON users (email);
        CREATE INDEX payment_methods_user ON payment_methods (user_id, position);
        CREATE INDEX orders_user ON orders (user_id, position);
        CREATE INDEX variants_product ON variants (product_id, position);
        """;

    public SqliteConnection Connection { get; }

    StoreDatabase(SqliteConnection connection) => Connection = connection;

    /// <summary>An empty store (schema only), in memory.</summary>
    public static StoreDatabase CreateEmpty()
    {
        var store = new StoreDatabase(OpenMemory());
        store.Execute(Schema);
        return store;
    }

    static SqliteConnection OpenMemory()
    {
        var c = new SqliteConnection("Data Source=:memory:");
        c.Open();
        return c;
    }

    /// <summary>Loads a store file into memory (the file is opened read-only and closed again).</summary>
    public static StoreDatabase Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: store database not found (make one with `hone agent data`)", path);
        var memory = OpenMemory();
        try
        {
            using (var file = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString()))
            {
                file.Open();
                file.BackupDatabase(memory);
            }
            var store = new StoreDatabase(memory);
            store.CheckSchema(path);
            return store;
        }
        catch (SqliteException e)
        {
            memory.Dispose();
            throw new DataFormatException(path, 0, $"not a store database: {e.Message}");
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    void CheckSchema(string path)
    {
        foreach (var (table, _) in Tables)
            if (Scalar<long>("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $n", ("$n", table)) != 1)
                throw new DataFormatException(path, 0, $"not a store database: table '{table}' is missing");
    }

    readonly object _copying = new();

    /// <summary>A fresh in-memory copy of this store, for one trial (safe to call from trials running at once).</summary>
    public StoreDatabase Copy()
    {
        var memory = OpenMemory();
        lock (_copying) Connection.BackupDatabase(memory);
        return new StoreDatabase(memory);
    }

    /// <summary>
    /// Writes the store to <paramref name="path"/> byte-for-byte reproducibly: a fresh file with fixed page size and
    /// journal mode, filled table by table in key order (VACUUM INTO), written to a temporary name and renamed.
    /// </summary>
    public void Save(string path)
    {
        string full = Path.GetFullPath(path);
        string temporary = full + ".tmp";
        if (File.Exists(temporary)) File.Delete(temporary);
        SqliteConnection.ClearAllPools();
        using (var target = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = temporary, Pooling = false }.ToString()))
        {
            target.Open();
            using (var setup = target.CreateCommand())
            {
                setup.CommandText = "PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE; PRAGMA user_version = 1;";
                setup.ExecuteNonQuery();
            }
            using (var create = target.CreateCommand())
            {
                create.CommandText = Schema;
                create.ExecuteNonQuery();
            }
            using var transaction = target.BeginTransaction();
            foreach (var (table, key) in Tables)
            {
                var columns = Columns(table);
                using var read = Connection.CreateCommand();
                read.CommandText = $"SELECT {string.Join(", ", columns)} FROM {table} ORDER BY {key}";
                using var insert = target.CreateCommand();
                insert.Transaction = transaction;
                insert.CommandText = $"INSERT INTO {table} ({string.Join(", ", columns)}) VALUES ({string.Join(", ", columns.Select((_, i) => "$p" + i))})";
                var parameters = columns.Select((_, i) => insert.Parameters.Add(new SqliteParameter("$p" + i, null))).ToArray();
                using var reader = read.ExecuteReader();
                while (reader.Read())
                {
                    for (int i = 0; i < columns.Count; i++) parameters[i].Value = reader.IsDBNull(i) ? DBNull.Value : reader.GetValue(i);
                    insert.ExecuteNonQuery();
                }
            }
            transaction.Commit();
        }
        File.Move(temporary, full, overwrite: true);
    }

    public List<string> Columns(string table)
    {
        var columns = new List<string>();
        using var command = Connection.CreateCommand();
        command.CommandText = $"SELECT name FROM pragma_table_info('{table}') ORDER BY cid";
        using var reader = command.ExecuteReader();
        while (reader.Read()) columns.Add(reader.GetString(0));
        return columns;
    }

    /// <summary>
    /// SHA-256 (hex) of the logical content: every table in <see cref="Tables"/> order, rows sorted by key, each value
    /// written with a type tag (null, integer, text) and its length — independent of the file's pages and history.
    /// </summary>
    public string Hash()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new StringBuilder();
        foreach (var (table, key) in Tables)
        {
            buffer.Clear().Append("table ").Append(table).Append('\n');
            using var command = Connection.CreateCommand();
            command.CommandText = $"SELECT * FROM {table} ORDER BY {key}";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                for (int i = 0; i < reader.FieldCount; i++)
                {
                    if (reader.IsDBNull(i)) buffer.Append("n;");
                    else if (reader.GetFieldType(i) == typeof(long)) buffer.Append('i').Append(reader.GetInt64(i)).Append(';');
                    else
                    {
                        string s = reader.GetString(i);
                        buffer.Append('t').Append(s.Length).Append(':').Append(s).Append(';');
                    }
                }
                buffer.Append('\n');
                if (buffer.Length > 1 << 16) { sha.AppendData(Encoding.UTF8.GetBytes(buffer.ToString())); buffer.Clear(); }
            }
            sha.AppendData(Encoding.UTF8.GetBytes(buffer.ToString()));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public int Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, parameters);
        return command.ExecuteNonQuery();
    }

    public T? Scalar<T>(string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(sql, parameters);
        var value = command.ExecuteScalar();
        return value is null or DBNull ? default : (T)Convert.ChangeType(value, Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T), System.Globalization.CultureInfo.InvariantCulture);
    }

    public SqliteCommand Command(string sql, params (string Name, object? Value)[] parameters)
    {
        var command = Connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command;
    }

    public void Dispose() => Connection.Dispose();
}
