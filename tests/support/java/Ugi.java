import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.security.UserGroupInformation;

/**
 * Hadoop's login user, as the JVM pyspark starts gets it: UserGroupInformation from the
 * ticket cache that KRB5CCNAME names, with the core-site.xml of HADOOP_CONF_DIR (which the
 * spark-submit launcher puts on the JVM's classpath; read here by its path).
 *
 * <p>Prints one line, {@code ok principal=P auth=KERBEROS credentials=true} when the login
 * user is a Kerberos principal with Kerberos credentials (exit 0); otherwise {@code failed}
 * and what UGI reports, or the exception, and exits 1.
 */
public class Ugi {
  public static void main(String[] args) {
    try {
      Configuration conf = new Configuration();
      String confDir = System.getenv("HADOOP_CONF_DIR");
      if (confDir != null) {
        conf.addResource(new Path(confDir, "core-site.xml"));
      }
      UserGroupInformation.setConfiguration(conf);
      UserGroupInformation ugi = UserGroupInformation.getLoginUser();
      boolean kerberos =
          ugi.getAuthenticationMethod() == UserGroupInformation.AuthenticationMethod.KERBEROS
              && ugi.hasKerberosCredentials();
      System.out.println(
          (kerberos ? "ok" : "failed")
              + " principal="
              + ugi.getUserName()
              + " auth="
              + ugi.getAuthenticationMethod()
              + " credentials="
              + ugi.hasKerberosCredentials());
      System.exit(kerberos ? 0 : 1);
    } catch (Exception e) {
      StringBuilder why = new StringBuilder();
      for (Throwable c = e; c != null; c = c.getCause()) {
        why.append(why.length() == 0 ? "" : " <- ").append(c);
      }
      System.out.println("failed " + why.toString().replace('\n', ' '));
      System.exit(1);
    }
  }
}
