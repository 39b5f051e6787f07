# regauth in an empty image: one statically linked binary, no shell, no libc, no system CA
# store (federation's jwks_url uses the web roots built into the binary; LDAP over TLS needs
# ldap.ca_file, see docs/container.md). No base image is pulled and nothing is compiled
# here: scripts/build-image.sh builds the binary with cargo and stages the build context
# (this file, `regauth` and `regauth.yaml`). See docs/container.md.
FROM scratch

COPY regauth /regauth
COPY regauth.yaml /etc/regauth/regauth.yaml

# Image defaults. Environment variables win over the settings file: override them with
# `docker run -e` or the pod's `env`, not in the file.
# - REGAUTH_CONFIG: the settings file (the empty one above unless one is mounted over it).
# - REGAUTH_KEY__PATH and REGAUTH_AUTH__REFRESH_SECRET_FILE: the key directory is a secret
#   mount. Naming the key also means a missing key is an error at start, never a key
#   generated inside one container (replicas must share one key).
ENV REGAUTH_CONFIG=/etc/regauth/regauth.yaml \
    REGAUTH_SERVER__LISTEN=0.0.0.0:5001 \
    REGAUTH_KEY__PATH=/etc/regauth/keys/signing.key \
    REGAUTH_AUTH__REFRESH_SECRET_FILE=/etc/regauth/keys/refresh.secret

# An unprivileged user and group that exist nowhere else (the "nonroot" convention).
USER 65532:65532
EXPOSE 5001

# `regauth probe` without a URL asks /healthz on server.admin_listen, else server.listen.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/regauth", "probe"]

ENTRYPOINT ["/regauth", "serve"]
