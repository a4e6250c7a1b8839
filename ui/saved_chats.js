// The browser side of the saved conversations (ui/saved_chats.py): read and write the records the server sealed.
// Each conversation is its own localStorage key, so tabs never overwrite each other's; this tab's open one is in
// sessionStorage, so a reload reopens it. Records are opaque here: only the server can make or check them.
(() => {
  const PREFIX = "space-chat:v1:";
  const CURRENT = "space-chat:current";
  const APPLIED = "space-chat:applied";
  const FORKS = "space-chat:forks"; // this tab's copies: {id the server knows: id it is saved under}
  const local = window.localStorage;
  const tab = window.sessionStorage;

  function ids() {
    const found = [];
    for (let i = 0; i < local.length; i++) {
      const key = local.key(i);
      if (key && key.startsWith(PREFIX)) found.push(key.slice(PREFIX.length));
    }
    return found;
  }

  function summary(id) {
    try {
      const record = JSON.parse(local.getItem(PREFIX + id));
      return { id, meta: record.meta, meta_sig: record.meta_sig };
    } catch (error) {
      return { id, meta: null, meta_sig: null };
    }
  }

  function updatedOf(id) {
    const item = summary(id);
    return item.meta && typeof item.meta.updated === "number" ? item.meta.updated : null;
  }

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  window.savedChats = {
    // What the server needs to list the saved chats and reopen this tab's: summaries, and one whole record.
    snapshot(openId) {
      const all = ids();
      const wanted = openId || tab.getItem(CURRENT);
      const id = wanted && all.includes(wanted) ? wanted : null;
      return { metas: all.map(summary), open: id ? { id, record: local.getItem(PREFIX + id) } : null };
    },

    // Carry out a plan from the server once: write, drop, remember this tab's chat. Returns a notice, or "".
    apply(plan) {
      if (!plan || !plan.nonce || tab.getItem(APPLIED) === plan.nonce) return "";
      tab.setItem(APPLIED, plan.nonce);
      for (const id of plan.drop || []) local.removeItem(PREFIX + id);
      let notice = "";
      if (plan.write) {
        const forks = JSON.parse(tab.getItem(FORKS) || "{}");
        let id = forks[plan.write.id] || plan.write.id;
        const stored = updatedOf(id);
        // Another tab saved this chat since this tab last did: keep both, this tab's under a new id.
        if (stored !== null && plan.write.base !== null && stored > plan.write.base) {
          id = forks[plan.write.id] = newId();
          tab.setItem(FORKS, JSON.stringify(forks));
          notice = "This chat was also changed in another tab: this tab's version is saved as a copy.";
        }
        try {
          local.setItem(PREFIX + id, plan.write.record);
        } catch (error) {
          return "Your browser refused to save this chat (its storage is full): export it, or delete old chats.";
        }
        tab.setItem(CURRENT, id);
      } else if ("current" in plan) {
        if (plan.current === null) tab.removeItem(CURRENT);
        else tab.setItem(CURRENT, JSON.parse(tab.getItem(FORKS) || "{}")[plan.current] || plan.current);
      }
      return notice;
    },

    // Save text the server made (an export) as a file.
    download(file) {
      if (!file || !file.content) return;
      const blob = new Blob([file.content], { type: file.type || "text/plain" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = file.name || "chat.txt";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    },
  };

  // On a phone the open sidebar covers the chat: there it starts closed (its toggle opens it again). The toggle
  // answers once the page has rendered, so it is pressed then, and again until the sidebar has closed.
  if (window.matchMedia("(max-width: 768px)").matches) {
    let tries = 0;
    const timer = setInterval(() => {
      const sidebar = document.querySelector("#saved-chats");
      const ready = sidebar && document.querySelector("#message textarea");
      if ((ready && !sidebar.classList.contains("open")) || ++tries > 100) {
        clearInterval(timer);
      } else if (ready) {
        sidebar.querySelector(".toggle-button")?.click();
      }
    }, 200);
  }
})();
