# dynarust in a container: `deno compile` builds the one executable (with the encryption key module of the
# build context embedded), and a slim image runs it. Build with network access (Deno's runtime download):
#   deno task gen-key            # once: your data's key; keep src/store/encryption_key.ts safe and reuse it
#   docker build -t dynarust .
# Run: docker run -p 6660:6660 -v dynarust-data:/data -e JWT_SECRET=... -e CLUSTER_SECRET=... dynarust
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY src ./src
RUN deno install --frozen --entrypoint main.ts
RUN deno task compile

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/dynarust /dynarust
VOLUME /data
EXPOSE 6660
ENTRYPOINT ["/dynarust", "--data-dir", "/data"]
CMD ["0.0.0.0:6660"]
