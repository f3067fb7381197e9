# llamaport in a container: the single executable built from source, run as a non-root user on a slim Debian.
#   docker build -t llamaport .
#   docker run -p 9112:9112 -v "$PWD/models:/models" -v "$PWD/plugins:/plugins" llamaport
# /models holds models.yaml and the GGUF files it names (without one, the built-in demo model is served);
# /plugins holds protocol plugins (.ts files). Downloaded hf:/https: models and the unpacked engine go to
# /var/cache/llamaport (a volume: mount one to keep downloads across restarts).

# --- build: npm ci installs Bun and node-llama-cpp's prebuilt llama.cpp for this platform; the build embeds them ---
FROM node:22-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY . .
# linux-x64 (CPU) on amd64 hosts, linux-arm64 on arm64 ones.
ARG TARGETARCH=amd64
RUN npm run build -- --target "linux-$( [ "$TARGETARCH" = arm64 ] && echo arm64 || echo x64 )" \
  && mv dist/llamaport-linux-* /llamaport

# --- run: glibc, libstdc++ and tar (the engine unpacks itself on first start) come with Debian slim ---
FROM debian:bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates curl \
  && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --user-group --home-dir /var/cache/llamaport --no-create-home llamaport \
  && mkdir -p /models /plugins /var/cache/llamaport \
  && chown llamaport:llamaport /var/cache/llamaport
COPY --from=build /llamaport /usr/local/bin/llamaport
# Listen on every interface (a container's loopback is its own); models.yaml is found in the working folder.
ENV LLAMAPORT_HOST=0.0.0.0 \
    LLAMAPORT_PORT=9112 \
    LLAMAPORT_PLUGINS=/plugins \
    LLAMAPORT_CACHE=/var/cache/llamaport
WORKDIR /models
USER 10001:10001
EXPOSE 9112
VOLUME ["/var/cache/llamaport"]
# 200 once llama.cpp is ready; 503 while it loads and while it drains on SIGTERM.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9112/health"]
# SIGTERM drains: running replies get --shutdown-timeout (default 10 s) to finish; give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["llamaport"]
CMD ["serve"]
