import java.security.PrivilegedExceptionAction;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.security.auth.Subject;
import javax.security.auth.kerberos.KerberosTicket;
import javax.security.auth.login.AppConfigurationEntry;
import javax.security.auth.login.LoginContext;
import org.apache.hadoop.security.UserGroupInformation;
import org.ietf.jgss.GSSContext;
import org.ietf.jgss.GSSManager;
import org.ietf.jgss.GSSName;
import org.ietf.jgss.Oid;

/**
 * A JVM that keeps using the user's ticket cache, as a notebook's Spark driver does.
 *
 * <p>{@code LongLived SERVICE SECONDS EVERY_MS}: for SECONDS seconds, every EVERY_MS
 * milliseconds, two checks, one line of output each:
 *
 * <ul>
 *   <li>{@code ugi}: Hadoop's login user (from the cache named by KRB5CCNAME, with
 *       hadoop.security.authentication = kerberos), after {@code reloginFromTicketCache()};
 *   <li>{@code jaas}: a new JAAS login (Krb5LoginModule, useTicketCache, the JDK finding the
 *       cache itself) in the same JVM.
 * </ul>
 *
 * <p>Each check proves the credentials are good now: the subject's TGT has not ended, and a
 * GSS-API context to SERVICE (a Kerberos principal name such as HTTP/localhost) gets its first
 * token, which needs a service ticket from the KDC (the subject's cached service tickets are
 * dropped first, so the KDC sees the TGT every time). With SECONDS = 0 it does one {@code jaas}
 * check and exits 0 or 1: a short client.
 *
 * <p>A line is {@code KIND ok NOW_MS principal=P start=MS end=MS} or {@code KIND FAIL NOW_MS
 * ERROR}, where start and end are the TGT's.
 */
public class LongLived {
  static final Oid KRB5;
  static final Oid KRB5_PRINCIPAL;

  static {
    try {
      KRB5 = new Oid("1.2.840.113554.1.2.2");
      KRB5_PRINCIPAL = new Oid("1.2.840.113554.1.2.2.1");
    } catch (Exception e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  interface Login {
    Subject subject() throws Exception;
  }

  public static void main(String[] args) throws Exception {
    String service = args[0];
    long seconds = Long.parseLong(args[1]);
    long every = Long.parseLong(args[2]);
    if (seconds == 0) {
      System.exit(check("jaas", LongLived::jaasLogin, service) ? 0 : 1);
    }
    org.apache.hadoop.conf.Configuration conf = new org.apache.hadoop.conf.Configuration(false);
    conf.set("hadoop.security.authentication", "kerberos");
    // Hadoop skips a relogin less than this long after the last one (default 60 s, as long
    // as the whole life of this realm's tickets).
    conf.set("hadoop.kerberos.min.seconds.before.relogin", "1");
    UserGroupInformation.setConfiguration(conf);
    UserGroupInformation ugi = UserGroupInformation.getLoginUser();
    long until = System.currentTimeMillis() + seconds * 1000;
    boolean all = true;
    while (System.currentTimeMillis() < until) {
      all &= check("ugi", () -> ugiSubject(ugi), service);
      all &= check("jaas", LongLived::jaasLogin, service);
      Thread.sleep(every);
    }
    System.exit(all ? 0 : 1);
  }

  static Subject ugiSubject(UserGroupInformation ugi) throws Exception {
    ugi.reloginFromTicketCache();
    if (!ugi.hasKerberosCredentials()) {
      throw new IllegalStateException("the login user has no Kerberos credentials: " + ugi);
    }
    return ugi.doAs(
        (PrivilegedExceptionAction<Subject>)
            () -> Subject.getSubject(java.security.AccessController.getContext()));
  }

  static Subject jaasLogin() throws Exception {
    Map<String, String> options = new HashMap<>();
    options.put("useTicketCache", "true");
    options.put("doNotPrompt", "true");
    AppConfigurationEntry entry =
        new AppConfigurationEntry(
            "com.sun.security.auth.module.Krb5LoginModule",
            AppConfigurationEntry.LoginModuleControlFlag.REQUIRED,
            options);
    javax.security.auth.login.Configuration config =
        new javax.security.auth.login.Configuration() {
          @Override
          public AppConfigurationEntry[] getAppConfigurationEntry(String name) {
            return new AppConfigurationEntry[] {entry};
          }
        };
    LoginContext login = new LoginContext("LongLived", new Subject(), null, config);
    login.login();
    return login.getSubject();
  }

  static boolean check(String kind, Login how, String service) {
    try {
      Subject subject = how.subject();
      KerberosTicket tgt = null;
      List<KerberosTicket> services = new ArrayList<>();
      for (KerberosTicket t : subject.getPrivateCredentials(KerberosTicket.class)) {
        if (t.getServer().getName().startsWith("krbtgt/")) {
          if (tgt == null) {
            tgt = t;
          }
        } else {
          services.add(t);
        }
      }
      if (tgt == null) {
        throw new IllegalStateException("no TGT in the subject");
      }
      long now = System.currentTimeMillis();
      if (tgt.getEndTime().getTime() <= now) {
        throw new IllegalStateException("the TGT ended at " + tgt.getEndTime().getTime());
      }
      subject.getPrivateCredentials().removeAll(services);
      Subject.doAs(
          subject,
          (PrivilegedExceptionAction<Void>)
              () -> {
                GSSManager manager = GSSManager.getInstance();
                GSSName name = manager.createName(service, KRB5_PRINCIPAL);
                GSSContext context =
                    manager.createContext(name, KRB5, null, GSSContext.DEFAULT_LIFETIME);
                try {
                  byte[] token = context.initSecContext(new byte[0], 0, 0);
                  if (token == null || token.length == 0) {
                    throw new IllegalStateException("no GSS token for " + service);
                  }
                } finally {
                  context.dispose();
                }
                return null;
              });
      System.out.println(
          kind
              + " ok "
              + System.currentTimeMillis()
              + " principal="
              + tgt.getClient().getName()
              + " start="
              + tgt.getStartTime().getTime()
              + " end="
              + tgt.getEndTime().getTime());
      return true;
    } catch (Throwable e) {
      StringBuilder why = new StringBuilder();
      for (Throwable c = e; c != null; c = c.getCause()) {
        why.append(why.length() == 0 ? "" : " <- ").append(c);
      }
      System.out.println(
          kind + " FAIL " + System.currentTimeMillis() + " " + why.toString().replace('\n', ' '));
      return false;
    } finally {
      System.out.flush();
    }
  }
}
