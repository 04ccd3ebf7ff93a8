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
RUN test -s src/store/encryption_key.ts || { \
  echo "dynarust: src/store/encryption_key.ts is missing from the build context. Run 'deno task gen-key'" \
  "once, keep that file, and build every image that must read the same volumes with it." >&2; exit 1; }
RUN deno install --frozen --entrypoint main.ts
# The task's `gen-key --if-missing` step finds the key checked above and leaves it as it is.
RUN deno task compile

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/dynarust /dynarust
VOLUME /data
EXPOSE 6660
ENTRYPOINT ["/dynarust", "--data-dir", "/data"]
CMD ["0.0.0.0:6660"]
