// Bouncy Castle as a CMS verifier for rekey's interop tests (tests/interop.rs).
//
// Reads a job file; each line is  MESSAGE_FILE|CONTENT_FILE_OR_EMPTY|CERT_FILE[,CERT_FILE...]
// and prints, for every SignerInfo of that message, one line:
//   <line-number> <serial-hex> OK
//   <line-number> <serial-hex> FAIL <reason>
//   <line-number> - ERROR <reason>        (the message itself could not be read)
// Each signer is checked with SignerInformation.verify and Bouncy Castle's default verifier,
// JcaSimpleSignerInfoVerifierBuilder().build(cert), against the supplied certificate whose
// issuer and serial match its SignerIdentifier. Built from a certificate, that verifier also
// refuses a certificate not valid at the signer's signingTime ("verifier not valid at
// signingTime"), as Java-based receivers do.

import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;

import org.bouncycastle.cert.jcajce.JcaX509CertificateHolder;
import org.bouncycastle.cms.CMSProcessableByteArray;
import org.bouncycastle.cms.CMSSignedData;
import org.bouncycastle.cms.SignerInformation;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;

public class BcVerify {
    public static void main(String[] args) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        List<String> lines = Files.readAllLines(Paths.get(args[0]));
        int n = 0;
        for (String line : lines) {
            n++;
            if (line.isBlank()) {
                continue;
            }
            String[] parts = line.split("\\|", -1);
            try {
                byte[] der = Files.readAllBytes(Paths.get(parts[0]));
                CMSSignedData sd = parts[1].isEmpty()
                        ? new CMSSignedData(der)
                        : new CMSSignedData(
                                new CMSProcessableByteArray(Files.readAllBytes(Paths.get(parts[1]))), der);
                List<X509Certificate> certs = new ArrayList<>();
                for (String f : parts[2].split(",")) {
                    try (InputStream in = new FileInputStream(f)) {
                        for (java.security.cert.Certificate c : cf.generateCertificates(in)) {
                            certs.add((X509Certificate) c);
                        }
                    }
                }
                for (SignerInformation si : sd.getSignerInfos().getSigners()) {
                    String serial = si.getSID().getSerialNumber() == null
                            ? "keyid" : si.getSID().getSerialNumber().toString(16);
                    X509Certificate match = null;
                    for (X509Certificate c : certs) {
                        if (si.getSID().match(new JcaX509CertificateHolder(c))) {
                            match = c;
                        }
                    }
                    if (match == null) {
                        System.out.println(n + " " + serial + " FAIL no certificate");
                        continue;
                    }
                    try {
                        boolean ok = si.verify(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(match));
                        System.out.println(n + " " + serial + (ok ? " OK" : " FAIL invalid signature"));
                    } catch (Exception e) {
                        System.out.println(n + " " + serial + " FAIL " + e.getClass().getSimpleName() + ": "
                                + String.valueOf(e.getMessage()).replace('\n', ' '));
                    }
                }
            } catch (Exception e) {
                System.out.println(n + " - ERROR " + e.getClass().getSimpleName() + ": "
                        + String.valueOf(e.getMessage()).replace('\n', ' '));
            }
        }
    }
}
