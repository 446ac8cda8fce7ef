import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import org.apache.hadoop.security.authentication.client.AuthenticatedURL;
import org.apache.hadoop.security.authentication.client.AuthenticationException;
import org.apache.hadoop.security.authentication.client.KerberosAuthenticator;

/**
 * GET the URL in args[0] as a Hadoop client does (WebHDFS, YARN's REST API):
 * Hadoop's AuthenticatedURL with its KerberosAuthenticator, which logs in from
 * the ticket cache (KRB5CCNAME), does the SPNEGO exchange and sends the
 * hadoop.auth cookie it got with the request.
 *
 * Prints "status N", "body TEXT" and "token true|false" (a hadoop.auth cookie
 * was kept), or "refused MESSAGE" and exits 3 when the authenticator fails.
 *
 * For HTTP the JDK's own Negotiate support takes credentials from the ticket
 * cache unless javax.security.auth.useSubjectCredsOnly is true; it would then
 * answer the server's first challenge itself and Hadoop's authenticator
 * would only see the result. The property is set, so the exchange under test
 * is Hadoop's: its JAAS login from KRB5CCNAME and its SPNEGO tokens. (Had the
 * JDK answered, the authenticator would find a hadoop.auth cookie that is not
 * one of Hadoop's tokens, the test server's session, and refuse: a status 200
 * with "token true" is Hadoop's own exchange.)
 */
public class HadoopSpnego {
    public static void main(String[] args) throws Exception {
        System.setProperty("javax.security.auth.useSubjectCredsOnly", "true");
        URL url = new URL(args[0]);
        AuthenticatedURL.Token token = new AuthenticatedURL.Token();
        HttpURLConnection conn;
        try {
            conn = new AuthenticatedURL(new KerberosAuthenticator()).openConnection(url, token);
        } catch (AuthenticationException e) {
            System.out.println("refused " + e);
            System.exit(3);
            return;
        }
        int status = conn.getResponseCode();
        InputStream in = status < 400 ? conn.getInputStream() : conn.getErrorStream();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        if (in != null) {
            in.transferTo(body);
        }
        System.out.println("status " + status);
        System.out.println("body " + body.toString(StandardCharsets.UTF_8).trim());
        System.out.println("token " + token.isSet());
    }
}
