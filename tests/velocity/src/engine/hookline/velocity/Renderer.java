package hookline.velocity;

import java.io.StringWriter;
import java.net.URL;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Function;
import org.apache.velocity.VelocityContext;
import org.apache.velocity.app.VelocityEngine;

/**
 * Renders one request with the Velocity engine on this class's classpath (1.7 or 2.x: this
 * file uses only API both have, and is compiled against each).
 *
 * <p>Request fields: template (string), engine ("1.7" | "2"), headerCase ("sensitive": the
 * header map is a LinkedHashMap keyed by each name as sent; "insensitive": a TreeMap with
 * String.CASE_INSENSITIVE_ORDER), headers ([[name, value], ...], a repeated name keeps the last
 * value), query and path ({name: value}), body (string, default empty). The engine keeps
 * Velocity's defaults for its version; only its logging is silenced.
 */
public final class Renderer implements Function<Map<String, Object>, Map<String, Object>> {
  private static final Set<String> FIELDS =
      Set.of("template", "engine", "headerCase", "headers", "query", "path", "body");

  private final VelocityEngine engine;
  private final String version;

  public Renderer() {
    Properties properties = new Properties();
    if (isVelocity1()) {
      // 1.7 logs through its own LogChute (velocity.log in the working directory by default).
      properties.setProperty(
          "runtime.log.logsystem.class", "org.apache.velocity.runtime.log.NullLogChute");
    }
    // 2.x logs through SLF4J; the runner puts slf4j-nop on its classpath.
    engine = new VelocityEngine();
    engine.init(properties);
    version = velocityVersion();
  }

  @Override
  public Map<String, Object> apply(Map<String, Object> request) {
    for (String key : request.keySet()) {
      if (!FIELDS.contains(key)) {
        throw new IllegalArgumentException("unknown request field \"" + key + "\"");
      }
    }
    String template = string(request, "template", null);
    String body = string(request, "body", "");
    String headerCase = string(request, "headerCase", null);
    Map<String, String> headers;
    if (headerCase.equals("sensitive")) {
      headers = new LinkedHashMap<>();
    } else if (headerCase.equals("insensitive")) {
      headers = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
    } else {
      throw new IllegalArgumentException(
          "\"headerCase\" must be \"sensitive\" or \"insensitive\", not \"" + headerCase + "\"");
    }
    Object headerList = request.getOrDefault("headers", List.of());
    if (!(headerList instanceof List)) {
      throw new IllegalArgumentException("\"headers\" must be an array of [name, value] pairs");
    }
    for (Object pair : (List<?>) headerList) {
      if (!(pair instanceof List)
          || ((List<?>) pair).size() != 2
          || !(((List<?>) pair).get(0) instanceof String)
          || !(((List<?>) pair).get(1) instanceof String)) {
        throw new IllegalArgumentException("each header must be a [name, value] pair of strings");
      }
      headers.put((String) ((List<?>) pair).get(0), (String) ((List<?>) pair).get(1));
    }
    Map<String, String> query = stringMap(request, "query");
    Map<String, String> path = stringMap(request, "path");

    Map<String, Object> responseOverride = new LinkedHashMap<>();
    responseOverride.put("header", new LinkedHashMap<String, Object>());
    Map<String, Object> context = context(responseOverride);

    VelocityContext velocity = new VelocityContext();
    velocity.put("input", new Input(body, path, query, headers));
    velocity.put("util", new Util());
    velocity.put("context", context);
    velocity.put("stageVariables", new LinkedHashMap<String, String>());

    StringWriter out = new StringWriter();
    engine.evaluate(velocity, out, "mapping-template", template);

    Map<String, Object> result = new LinkedHashMap<>();
    result.put("output", out.toString());
    result.put("status_override", status(responseOverride.get("status")));
    result.put("engine", version);
    return result;
  }

  /** The $context of a POST through a REST API stage (fixed values: tests compare outputs). */
  private static Map<String, Object> context(Map<String, Object> responseOverride) {
    Map<String, Object> identity = new LinkedHashMap<>();
    identity.put("sourceIp", "192.0.2.1");
    identity.put("userAgent", "");
    Map<String, Object> requestOverride = new LinkedHashMap<>();
    requestOverride.put("header", new LinkedHashMap<String, Object>());
    requestOverride.put("path", new LinkedHashMap<String, Object>());
    requestOverride.put("querystring", new LinkedHashMap<String, Object>());
    Map<String, Object> context = new LinkedHashMap<>();
    context.put("accountId", "123456789012");
    context.put("apiId", "a1b2c3d4e5");
    context.put("domainName", "hooks.example.com");
    context.put("httpMethod", "POST");
    context.put("identity", identity);
    context.put("path", "/test/hook");
    context.put("protocol", "HTTP/1.1");
    context.put("requestId", "00000000-0000-4000-8000-000000000000");
    context.put("resourcePath", "/hook");
    context.put("stage", "test");
    context.put("requestOverride", requestOverride);
    context.put("responseOverride", responseOverride);
    return context;
  }

  private static Integer status(Object status) {
    if (status == null) {
      return null;
    }
    if (status instanceof Number) {
      return ((Number) status).intValue();
    }
    try {
      return Integer.valueOf(status.toString().trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(
          "$context.responseOverride.status is not a number: \"" + status + "\"");
    }
  }

  private static String string(Map<String, Object> request, String key, String fallback) {
    Object value = request.get(key);
    if (value == null && fallback != null) {
      return fallback;
    }
    if (!(value instanceof String)) {
      throw new IllegalArgumentException("\"" + key + "\" must be a string");
    }
    return (String) value;
  }

  private static Map<String, String> stringMap(Map<String, Object> request, String key) {
    Object value = request.getOrDefault(key, Map.of());
    if (!(value instanceof Map)) {
      throw new IllegalArgumentException("\"" + key + "\" must be an object of strings");
    }
    Map<String, String> out = new LinkedHashMap<>();
    for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
      if (!(entry.getValue() instanceof String)) {
        throw new IllegalArgumentException("\"" + key + "\" must be an object of strings");
      }
      out.put((String) entry.getKey(), (String) entry.getValue());
    }
    return out;
  }

  private boolean isVelocity1() {
    try {
      Class.forName(
          "org.apache.velocity.runtime.log.NullLogChute", false, getClass().getClassLoader());
      return true;
    } catch (ClassNotFoundException e) {
      return false;
    }
  }

  /** The loaded engine's version, so a caller can check it got the engine it asked for. */
  private static String velocityVersion() {
    Package p = VelocityEngine.class.getPackage();
    if (p != null && p.getImplementationVersion() != null) {
      return p.getImplementationVersion();
    }
    URL jar = VelocityEngine.class.getProtectionDomain().getCodeSource().getLocation();
    String name = jar.getPath().replaceAll(".*/", "");
    return name.replaceAll("^velocity(-engine-core)?-", "").replaceAll("\\.jar$", "");
  }
}
