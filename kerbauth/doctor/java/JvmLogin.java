// A JVM logs in from a Kerberos ticket cache, as a Hadoop or JDBC client would.
//
// Run with the JDK's source launcher, as `kerbauth doctor` does:
//
//     java [-Djava.security.krb5.conf=FILE] JvmLogin.java [CACHE]
//
// A JAAS login with the JDK's Krb5LoginModule from the cache CACHE (default:
// the one KRB5CCNAME names, or the JDK's default), never from a keytab or a
// password, then the GSS-API credential that login gives for initiating a
// context (what SPNEGO, SASL/GSSAPI and Hadoop's RPC use). Prints one line:
//
//     ok principal=alice@EXAMPLE.COM lifetime=35990 realm=EXAMPLE.COM
//
// (lifetime: the seconds the credential has left; realm: the JDK's default
// realm, from the krb5.conf it reads, "-" when it has none), or, exit status 1,
//
//     failed LoginException: Unable to obtain Principal Name for authentication
//
// No password is ever asked for (doNotPrompt).

import java.security.PrivilegedExceptionAction;
import java.util.HashMap;
import java.util.Map;
import javax.security.auth.Subject;
import javax.security.auth.kerberos.KerberosPrincipal;
import javax.security.auth.login.AppConfigurationEntry;
import javax.security.auth.login.Configuration;
import javax.security.auth.login.LoginContext;
import org.ietf.jgss.GSSCredential;
import org.ietf.jgss.GSSManager;
import org.ietf.jgss.Oid;

public class JvmLogin {
    static final String KRB5_MECHANISM = "1.2.840.113554.1.2.2";

    /** The JAAS configuration: Krb5LoginModule from the ticket cache, nothing else. */
    static Configuration fromTicketCache(String cache) {
        Map<String, String> options = new HashMap<>();
        options.put("useTicketCache", "true");
        options.put("doNotPrompt", "true");
        options.put("useKeyTab", "false");
        options.put("storeKey", "false");
        if (cache != null) {
            options.put("ticketCache", cache);
        }
        AppConfigurationEntry entry = new AppConfigurationEntry(
            "com.sun.security.auth.module.Krb5LoginModule",
            AppConfigurationEntry.LoginModuleControlFlag.REQUIRED,
            options);
        return new Configuration() {
            @Override
            public AppConfigurationEntry[] getAppConfigurationEntry(String name) {
                return new AppConfigurationEntry[] {entry};
            }
        };
    }

    /** "principal=... lifetime=..." of a fresh JAAS login from the cache; throws on failure. */
    static String login(String cache) throws Exception {
        LoginContext context = new LoginContext("kerbauth", new Subject(), null,
            fromTicketCache(cache));
        context.login();
        try {
            PrivilegedExceptionAction<GSSCredential> initiate = () ->
                GSSManager.getInstance().createCredential(null, GSSCredential.DEFAULT_LIFETIME,
                    new Oid(KRB5_MECHANISM), GSSCredential.INITIATE_ONLY);
            GSSCredential credential = Subject.doAs(context.getSubject(), initiate);
            return "principal=" + credential.getName() + " lifetime="
                + credential.getRemainingLifetime() + " realm=" + defaultRealm();
        } finally {
            context.logout();
        }
    }

    /** The JDK's default realm (what Hadoop maps user names in), "-" when it has none. */
    static String defaultRealm() {
        try {
            return new KerberosPrincipal("kerbauth").getRealm();
        } catch (IllegalArgumentException e) {
            return "-";
        }
    }

    public static void main(String[] args) {
        String cache = args.length > 0 ? args[0] : null;
        try {
            System.out.println("ok " + login(cache));
        } catch (Exception e) {
            Throwable cause = e;
            if (cause instanceof java.security.PrivilegedActionException) {
                cause = cause.getCause();
            }
            String message = cause.getMessage() == null ? "" : cause.getMessage();
            System.out.println("failed " + cause.getClass().getSimpleName() + ": "
                + message.replace('\n', ' '));
            System.exit(1);
        }
    }
}
