// pgJDBC's DatabaseMetaData against OpenClaw: what JDBC tools (DBeaver, Metabase's JDBC path)
// call first. Run by tests/jdbc.rs: java -cp postgresql.jar Metadata.java <jdbc url>.
// Prints one line per result row, tab-separated, under a line naming the call.
import java.sql.*;

public class Metadata {
    static void print(String call, ResultSet rs, String... columns) throws SQLException {
        System.out.println("== " + call);
        while (rs.next()) {
            StringBuilder line = new StringBuilder();
            for (int i = 0; i < columns.length; i++) {
                if (i > 0) line.append('\t');
                line.append(rs.getString(columns[i]));
            }
            System.out.println(line);
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], "openclaw", "")) {
            DatabaseMetaData md = c.getMetaData();
            print("getTables", md.getTables(null, "public", "%", null), "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS");
            print("getColumns", md.getColumns(null, "public", "orders", "%"), "TABLE_NAME", "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "IS_NULLABLE", "ORDINAL_POSITION");
            print("getPrimaryKeys", md.getPrimaryKeys(null, "public", "stock"), "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME");
            print("getSchemas", md.getSchemas(), "TABLE_SCHEM");
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) AS n FROM orders")) {
                print("query", rs, "n");
            }
        }
    }
}
