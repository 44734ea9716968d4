// In-memory storage adapter for the test OAuth server (server.mjs).
// Owns: keeping every oidc-provider artifact (tokens, sessions, ...) in a Map per model until it
// expires. oidc-provider's bundled memory adapter is an LRU of ~1000 entries, so in long tests
// older tokens would be evicted and introspect as inactive; this one never evicts a live entry.

const stores = new Map(); // model name -> Map(id -> { payload, expiresAt })

function storeFor(model) {
  if (!stores.has(model)) stores.set(model, new Map());
  return stores.get(model);
}

function live(entry) {
  return entry && (entry.expiresAt === undefined || entry.expiresAt > Date.now());
}

// Drop expired entries now and then so a long run does not grow without bound.
setInterval(() => {
  for (const store of stores.values()) {
    for (const [id, entry] of store) if (!live(entry)) store.delete(id);
  }
}, 60_000).unref();

export default class MemoryAdapter {
  constructor(model) {
    this.store = storeFor(model);
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    this.store.set(id, { payload, expiresAt });
  }

  async find(id) {
    const entry = this.store.get(id);
    if (!live(entry)) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [id, entry] of this.store) {
      if (entry.payload[field] === value) return this.find(id);
    }
    return undefined;
  }

  findByUid(uid) {
    return this.findBy('uid', uid);
  }

  findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  // eslint-disable-next-line class-methods-use-this
  async revokeByGrantId(grantId) {
    for (const store of stores.values()) {
      for (const [id, entry] of store) if (entry.payload.grantId === grantId) store.delete(id);
    }
  }
}
