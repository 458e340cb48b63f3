// pgJDBC's DatabaseMetaData against OpenClaw: what JDBC tools (DBeaver, Metabase's JDBC path)
// call first. Run by tests/jdbc.rs: java -cp postgresql.jar Metadata.java <jdbc url>.
// Prints one line per result row, tab-separated, under a line naming the call; then DBeaver's
// navigator queries.
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
            dbeaver(c);
        }
    }

    // What DBeaver's PostgreSQL navigator runs (plugins/org.jkiss.dbeaver.ext.postgresql:
    // PostgreDataSource, PostgreDatabase, PostgreSchema), as it runs them: prepared, through
    // pgJDBC, the schema and table ids bound as int8.
    static void dbeaver(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("SET search_path = public,public,\"$user\"");
        }
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datallowconn AND NOT datistemplate ORDER BY db.datname")) {
            print("dbeaver databases", rs, "datname");
        }
        long publicOid = 0;
        try (PreparedStatement s = c.prepareStatement("SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass\n"
                + "ORDER BY nspname");
             ResultSet rs = s.executeQuery()) {
            System.out.println("== dbeaver schemas");
            while (rs.next()) {
                System.out.println(rs.getString("nspname"));
                if (rs.getString("nspname").equals("public")) publicOid = rs.getLong("oid");
            }
        }
        long ordersOid = 0;
        java.util.List<String> tables = new java.util.ArrayList<>();
        try (PreparedStatement s = c.prepareStatement("SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key \n"
                + "FROM pg_catalog.pg_class c\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass\n"
                + "WHERE c.relnamespace=? AND c.relkind not in ('i','I','c')")) {
            s.setLong(1, publicOid);
            try (ResultSet rs = s.executeQuery()) {
                while (rs.next()) {
                    tables.add(rs.getString("relname") + "\t" + rs.getString("relkind") + "\t" + rs.getString("description"));
                    if (rs.getString("relname").equals("orders")) ordersOid = rs.getLong("oid");
                }
            }
        }
        java.util.Collections.sort(tables);
        System.out.println("== dbeaver tables");
        tables.forEach(System.out::println);
        try (PreparedStatement s = c.prepareStatement("SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid\n"
                + "FROM pg_catalog.pg_attribute a\n"
                + "INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\n"
                + "LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\n"
                + "LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid\n"
                + "WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=?\n"
                + "ORDER BY a.attnum")) {
            s.setLong(1, ordersOid);
            try (ResultSet rs = s.executeQuery()) {
                print("dbeaver columns", rs, "relname", "attname", "atttypid", "attnum", "attnotnull", "def_value", "description");
            }
        }
    }
}
