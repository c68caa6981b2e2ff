package hookline.velocity;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * API Gateway's $util. A null argument (an unset reference) is an error: what AWS does with it
 * is not documented, so a template that passes one should not pass this bench.
 */
public final class Util {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** application/x-www-form-urlencoded, UTF-8: what java.net.URLEncoder writes. */
  public String urlEncode(String text) {
    return URLEncoder.encode(nonNull("urlEncode", text), StandardCharsets.UTF_8);
  }

  public String urlDecode(String text) {
    return URLDecoder.decode(nonNull("urlDecode", text), StandardCharsets.UTF_8);
  }

  public String base64Encode(String text) {
    return Base64.getEncoder()
        .encodeToString(nonNull("base64Encode", text).getBytes(StandardCharsets.UTF_8));
  }

  public String base64Decode(String text) {
    return new String(
        Base64.getDecoder().decode(nonNull("base64Decode", text)), StandardCharsets.UTF_8);
  }

  /** JSON text to the objects $input.path returns (maps, lists, strings, numbers). */
  public Object parseJson(String text) {
    try {
      return JSON.readValue(nonNull("parseJson", text), Object.class);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("parseJson: " + e.getOriginalMessage(), e);
    }
  }

  /**
   * JavaScript string rules as Apache Commons Lang 2's StringEscapeUtils.escapeJavaScript
   * applies them: quotes, backslash and '/' get a backslash, control and non-ASCII characters
   * become \\uXXXX (so a single quote becomes \\', which is not valid JSON, as AWS warns).
   */
  public String escapeJavaScript(String text) {
    String in = nonNull("escapeJavaScript", text);
    StringBuilder out = new StringBuilder(in.length() + 16);
    for (int i = 0; i < in.length(); i++) {
      char c = in.charAt(i);
      switch (c) {
        case '\b' -> out.append("\\b");
        case '\n' -> out.append("\\n");
        case '\t' -> out.append("\\t");
        case '\f' -> out.append("\\f");
        case '\r' -> out.append("\\r");
        case '\'' -> out.append("\\'");
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '/' -> out.append("\\/");
        default -> {
          if (c < 0x20 || c > 0x7f) {
            out.append(String.format("\\u%04X", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.toString();
  }

  private static String nonNull(String function, String text) {
    if (text == null) {
      throw new IllegalArgumentException("$util." + function + " got null (an unset reference)");
    }
    return text;
  }
}
