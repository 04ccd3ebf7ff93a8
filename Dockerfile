# dynarust in a container: `deno compile` builds the one executable, with the encryption key module of the
# build context embedded, and a slim image runs it. The key is never made here: a key drawn at build time
# would differ in every rebuilt image, and the volumes an older image wrote could no longer be read. So
# the build uses your key module and stops, saying so, when the build context has none:
#   deno task gen-key     # once; then keep src/store/encryption_key.ts safe (git ignores it) and build
#                         # every image that must read the same data from the same file
#   docker build -t dynarust .          # with network access (Deno's runtime download)
# Run: docker run -p 6660:6660 -v dynarust-data:/data -e JWT_SECRET=... -e CLUSTER_SECRET=... dynarust
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY src ./src
# The compile task runs these scripts: `gen-key --if-missing` first, then `deno compile` with the node's flags.
COPY tools/cli.ts tools/gen_key.ts tools/compile.ts ./tools/
RUN test -s src/store/encryption_key.ts || { \
  echo "dynarust: src/store/encryption_key.ts is missing from the build context. Run 'deno task gen-key'" \
  "once, keep that file, and build every image that must read the same volumes with it." >&2; exit 1; }
RUN deno install --frozen --entrypoint main.ts
# The task's `gen-key --if-missing` step finds the key checked above and leaves it as it is.
RUN deno task compile
# An empty directory to copy as /data: the runtime image has no shell to make one.
RUN mkdir /empty

# `:nonroot` runs as uid/gid 65532, never root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dynarust /dynarust
# /data is created owned by the node's user, so a named volume mounted on it starts out writable by it
# (a bind mount keeps its host owner: chown it to 65532 first).
COPY --from=build --chown=65532:65532 /empty /data
USER 65532:65532
VOLUME /data
EXPOSE 6660
# The binary checks itself (no shell or curl here): GET /health on the default port, 0 only on 200. A node
# answers 503 until it has joined (DYNA_JOIN_TIMEOUT_SECS, 60 s) and caught up, hence the start period.
# With another port or DYNA_MODE=https, override it in exec form (compose: `test: ["CMD", "/dynarust",
# "health", "https://127.0.0.1:PORT", "--ca", "/cert/ca.pem"]`); `docker run --health-cmd` needs a shell.
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 CMD ["/dynarust", "health"]
ENTRYPOINT ["/dynarust", "--data-dir", "/data"]
CMD ["0.0.0.0:6660"]
