/** The owner of sessions created while no authentication was configured. */
export const LOCAL_OWNER = "local";

/** Who is calling, as the auth layer established it. */
export interface Identity {
  /** The token's name, or the client certificate's common name, or LOCAL_OWNER. */
  name: string;
  /** Sees and manages every session, and may load models by path. */
  admin: boolean;
  /** The call came from this machine (127.0.0.1 or ::1). */
  loopback: boolean;
  via: "token" | "certificate" | "none";
}

/** What the transport knows about the caller. */
export interface Peer {
  /** The caller's IP address. */
  address: string;
  /** The client certificate's subject, when TLS verified one against --tls-client-ca. */
  certificate?: { commonName: string; unit: string };
}
